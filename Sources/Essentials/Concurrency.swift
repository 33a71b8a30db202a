// The few thread primitives the pipelines share: a pointer several workers write disjoint parts of, the first
// error any of them hit, and a bounded queue between a producer thread and its consumer.

import Foundation

/// A pointer handed to worker threads that each write their own disjoint slice of it.
package struct SendablePointer<T>: @unchecked Sendable {  // sound: every worker writes only its own indices
    /// The shared pointer.
    package let pointer: UnsafeMutablePointer<T>
    /// Wraps `pointer`.
    package init(pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

/// The first error recorded by any of several threads.
package final class FirstError: @unchecked Sendable {  // sound: the lock guards `first`
    private let lock = NSLock()
    private var first: Error?
    /// An empty record.
    package init() {}
    /// Keeps `e` unless an error was recorded before.
    package func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
    /// The first error recorded, if any.
    package var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
}

/// A FIFO of at most `capacity` items between one producer and one consumer thread.
package final class BoundedQueue<T: Sendable>: @unchecked Sendable {  // sound: the condition's lock guards all state
    private var items: [T] = []
    private let capacity: Int
    private let condition = NSCondition()
    private var closed = false
    private var cancelled = false

    /// A queue holding at most `capacity` items.
    package init(capacity: Int) { self.capacity = capacity }

    /// Adds `item`, waiting while full; returns false when the consumer has cancelled.
    package func put(_ item: T) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        if cancelled { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// No more items will come.
    package func close() { condition.lock(); closed = true; condition.broadcast(); condition.unlock() }

    /// The consumer stops; a waiting producer is released.
    package func cancel() { condition.lock(); cancelled = true; items.removeAll(); condition.broadcast(); condition.unlock() }

    /// The next item, waiting while empty; nil once closed and drained.
    package func take() -> T? {
        condition.lock(); defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        if items.isEmpty { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }
}

/// `DispatchQueue.concurrentPerform` for a body that need not be `@Sendable`: for kernels whose calls each write
/// their own part of memory the caller owns. Every call ends before this returns.
package func concurrentPerform(iterations: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        let shared = SharedBody(call: body)
        DispatchQueue.concurrentPerform(iterations: iterations) { shared.call($0) }
    }
}

/// A body shared by the calls of one `concurrentPerform`.
private struct SharedBody: @unchecked Sendable {  // sound: the calls touch disjoint data and end before the caller goes on
    let call: (Int) -> Void
}
