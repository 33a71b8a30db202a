// The few thread primitives the pipelines share: parallel calls that write disjoint parts of the caller's memory,
// the first error any of them hit, a monitor (lock, condition and state) and a bounded queue between a producer
// thread and its consumer.

import Foundation
import Synchronization

/// The first error recorded by any of several threads.
package final class FirstError: Sendable {
    private let first = Mutex<Error?>(nil)
    /// An empty record.
    package init() {}
    /// Keeps `e` unless an error was recorded before.
    package func record(_ e: Error) { first.withLock { if $0 == nil { $0 = e } } }
    /// The first error recorded, if any.
    package var error: Error? { first.withLock { $0 } }
}

/// State shared by threads that wait for one another: a lock, a condition and the value they guard (a monitor).
///
/// `Synchronization.Mutex` has no condition to wait on; this is the one place that pairs `NSCondition` with state,
/// so that the types built on it are checked by the compiler.
package final class Monitor<State: Sendable>: @unchecked Sendable {  // sound: `state` is read and written only while `condition` is locked
    private let condition = NSCondition()
    private var state: State

    /// A monitor guarding `state`.
    package init(_ state: State) { self.state = state }

    /// Runs `body` on the state with the lock held, then wakes every waiter (their conditions are checked again).
    package func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        return try body(&state)
    }

    /// Waits until `ready` holds, then runs `body` as `withLock` does, without releasing the lock in between.
    package func wait<R>(until ready: (State) -> Bool, then body: (inout State) throws -> R) rethrows -> R {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        while !ready(state) { condition.wait() }
        return try body(&state)
    }

    /// As ``wait(until:then:)``, giving up at `deadline`: nil when `ready` still does not hold then.
    package func wait<R>(until ready: (State) -> Bool, deadline: Date, then body: (inout State) throws -> R) rethrows -> R? {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        while !ready(state) {
            if !condition.wait(until: deadline) && !ready(state) { return nil }
        }
        return try body(&state)
    }
}

/// A FIFO of at most `capacity` items between one producer and one consumer thread.
package final class BoundedQueue<T: Sendable>: Sendable {
    private struct State: Sendable {
        var items: [T] = []
        var closed = false
        var cancelled = false
    }
    private let capacity: Int
    private let monitor = Monitor(State())

    /// A queue holding at most `capacity` items.
    package init(capacity: Int) { self.capacity = capacity }

    /// Adds `item`, waiting while full; returns false when the consumer has cancelled.
    package func put(_ item: T) -> Bool {
        monitor.wait(until: { $0.items.count < capacity || $0.cancelled }) { state in
            if state.cancelled { return false }
            state.items.append(item)
            return true
        }
    }

    /// No more items will come.
    package func close() { monitor.withLock { $0.closed = true } }

    /// The consumer stops; a waiting producer is released.
    package func cancel() {
        monitor.withLock {
            $0.cancelled = true; $0.items.removeAll()
        }
    }

    /// The next item, waiting while empty; nil once closed and drained.
    package func take() -> T? {
        monitor.wait(until: { !$0.items.isEmpty || $0.closed }) { state in
            state.items.isEmpty ? nil : state.items.removeFirst()
        }
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
