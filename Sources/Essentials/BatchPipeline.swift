// The decode pipeline of `extract-features` and `index build|add`: batches are prepared (images decoded and
// preprocessed) on a producer thread, each batch's items in parallel over the cores, while the caller runs the model
// on the batch before — at most `ahead` batches wait. Items keep their order, and a batch holds exactly the items
// the producer put in it, so what the model sees does not depend on threads or timing.

import Foundation

/// Prepares batches beside their consumer; see ``run(floatsPerItem:ahead:produce:prepare:consume:)``.
package enum BatchPipeline {
    /// Runs `produce` on a producer thread; it calls `ship` with each batch, in order, and stops when `ship` returns
    /// false (the consumer failed or a preparation did). Each item of a shipped batch is prepared by `prepare` on a
    /// worker thread: it writes the item's `floatsPerItem` floats into its slot of the batch and returns a value of
    /// its own (a thumbnail, or nothing). `consume` receives every batch on the calling thread — the items, their
    /// floats `[items.count · floatsPerItem]` and their values. The first error anywhere ends the run and is thrown.
    package static func run<Item: Sendable, Extra: Sendable>(
        floatsPerItem: Int,
        ahead: Int = 2,
        produce: @escaping @Sendable (_ ship: @Sendable ([Item]) -> Bool) throws -> Void,
        prepare: @escaping @Sendable (_ item: Item, _ floats: UnsafeMutableBufferPointer<Float>) throws -> Extra,
        consume: (_ items: [Item], _ floats: [Float], _ extras: [Extra]) throws -> Void
    ) throws {
        let queue = BoundedQueue<Result<(items: [Item], floats: [Float], extras: [Extra]), Error>>(capacity: ahead)
        @Sendable func ship(_ items: [Item]) -> Bool {
            if items.isEmpty { return true }
            var floats = [Float](repeating: 0, count: items.count * floatsPerItem)
            var extras = [Extra?](repeating: nil, count: items.count)
            let failure = FirstError()
            floats.withUnsafeMutableBufferPointer { f in
                extras.withUnsafeMutableBufferPointer { e in
                    concurrentPerform(iterations: items.count) { i in
                        do {
                            let slot = UnsafeMutableBufferPointer(rebasing: f[(i * floatsPerItem)..<((i + 1) * floatsPerItem)])
                            e[i] = try prepare(items[i], slot)
                        } catch {
                            failure.record(error)
                        }
                    }
                }
            }
            if let error = failure.error { _ = queue.put(.failure(error)); return false }
            return queue.put(.success((items, floats, extras.map { $0! })))
        }
        let finished = DispatchSemaphore(value: 0)
        let producer = Thread {
            do { try produce(ship) } catch { _ = queue.put(.failure(error)) }
            queue.close()
            finished.signal()
        }
        // A main thread's stack (8 MiB), not a secondary thread's smaller default: `concurrentPerform` also runs items
        // on the producer thread, and decoding goes deep into the image libraries.
        producer.stackSize = 8 << 20
        producer.start()
        defer {
            // Stop the producer (its next `ship` returns false) and wait for it: what it touched is ours again.
            queue.cancel()
            finished.wait()
        }
        while let batch = queue.take() {
            let (items, floats, extras) = try batch.get()
            try consume(items, floats, extras)
        }
    }
}
