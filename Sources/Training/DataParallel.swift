// The reference's DistributedDataParallel training on our Communicator (one process, or MPI ranks):
// - data: `DistributedSampler` semantics — every rank draws the same epoch permutation and takes every
//   world-th index starting at its rank, in per-rank batches of `--batch-size`;
// - loss: `get_loss` with `aggregate` — features of all ranks gathered, the local ones first and carrying
//   gradient, the others detached (`dist.all_gather`), or all carrying it with `--gather-with-grad`
//   (`torch.distributed.nn.all_gather`, whose backward sums every rank's gradient for a rank's features);
//   the loss is the mean cross-entropy over all gathered rows, the same value on every rank;
// - gradients: averaged over ranks after the backward pass (DDP's all-reduce), in buckets of about 25 MB as
//   DDP's default bucket size; the rank's compute threads are idle meanwhile (no overlap: on a CPU the
//   backward pass and the reduction would compete for the same cores).

import Distributed
import Foundation
import NeuralNet
import Tensors

/// Time and volume of the gradient all-reduces so far (reported at the end of a multi-process run).
final class ReductionStatistics {
    var seconds = 0.0
    var calls = 0
    var floats = 0
}

/// Gathering, sharding and gradient averaging for data-parallel training over `communicator`.
struct DataParallel {
    let communicator: Communicator
    /// `--gather-with-grad`.
    let gatherWithGrad: Bool
    let statistics = ReductionStatistics()

    var worldSize: Int { communicator.worldSize }
    var rank: Int { communicator.rank }

    /// This rank's part of an epoch's order (`DistributedSampler`): indices rank, rank + world, rank + 2·world, …
    func shard(_ order: [Int]) -> [Int] {
        guard worldSize > 1 else { return order }
        return stride(from: rank, to: order.count, by: worldSize).map { order[$0] }
    }

    /// Every rank's features `[n, e]` → `[world · n, e]`: this rank's first, then the others in rank order.
    func gathered(_ local: Variable) -> Variable {
        guard worldSize > 1 else { return local }
        let (n, e) = (local.shape[0], local.shape[1])
        let all = abortOnFailure { try communicator.allGather(local.value.scalars) }  // rank order
        var ordered = [Float]()
        ordered.reserveCapacity(all.count)
        ordered += local.value.scalars
        for r in 0..<worldSize where r != rank { ordered += all[(r * n * e)..<((r + 1) * n * e)] }
        let out = Tensor(shape: [worldSize * n, e], scalars: ordered)
        let comm = communicator, withGrad = gatherWithGrad, me = rank, world = worldSize
        return Variable.record(out, inputs: [local]) { g in
            guard withGrad else { return [Tensor(shape: [n, e], scalars: Array(g.scalars[0..<(n * e)]))] }
            // Back into rank order, summed over ranks; this rank's rows are its features' gradient.
            var byRank = [Float](repeating: 0, count: world * n * e)
            let gs = g.scalars
            var block = 1
            for r in 0..<world {
                let source = r == me ? 0 : block
                if r != me { block += 1 }
                byRank.replaceSubrange((r * n * e)..<((r + 1) * n * e), with: gs[(source * n * e)..<((source + 1) * n * e)])
            }
            abortOnFailure { try byRank.withUnsafeMutableBufferPointer { try comm.allReduceSum($0) } }
            return [Tensor(shape: [n, e], scalars: Array(byRank[(me * n * e)..<((me + 1) * n * e)]))]
        }
    }

    /// Replaces every trainable parameter's gradient by its mean over the ranks (a missing gradient counts as zero).
    func averageGradients(_ parameters: [Parameter]) throws {
        guard worldSize > 1 else { return }
        let started = DispatchTime.now().uptimeNanoseconds
        defer {
            statistics.seconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            statistics.calls += 1
            statistics.floats += parameters.reduce(0) { $0 + $1.value.count }
        }
        let bucketFloats = 25 * 1024 * 1024 / 4
        var start = 0
        while start < parameters.count {
            var end = start, floats = 0
            while end < parameters.count && (end == start || floats + parameters[end].value.count <= bucketFloats) {
                floats += parameters[end].value.count
                end += 1
            }
            var bucket = [Float](repeating: 0, count: floats)
            var offset = 0
            for p in parameters[start..<end] {
                if let g = p.grad { bucket.withUnsafeMutableBufferPointer { ($0.baseAddress! + offset).update(from: g.data, count: g.count) } }
                offset += p.value.count
            }
            try bucket.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
            let scale = 1 / Float(worldSize)
            offset = 0
            for p in parameters[start..<end] {
                let g = Tensor(shape: p.value.shape, scalars: bucket[offset..<(offset + p.value.count)].map { $0 * scale })
                p.setGrad(g)
                offset += p.value.count
            }
            start = end
        }
    }

    /// Gives every rank rank 0's values of `parameters` (DDP's initial synchronisation).
    func broadcastFromMain(_ parameters: [Parameter]) throws {
        guard worldSize > 1 else { return }
        for p in parameters {
            let bytes = p.value.scalars.withUnsafeBytes { Array($0) }
            let received = try communicator.broadcast(bytes, root: 0)
            guard received.count == bytes.count else {
                throw CommunicationError(description: "rank \(rank): rank 0 sent \(received.count) bytes for a parameter of \(bytes.count)")
            }
            let floats = received.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            p.value = Tensor(shape: p.value.shape, scalars: floats)
        }
    }

    /// Element-wise sums over ranks (validation totals).
    func sum(_ values: [Double]) throws -> [Double] { try communicator.allReduceSum(values) }

    /// Runs a collective that cannot throw to its caller (inside a backward rule): a failure ends the job with
    /// a message rather than leaving the other ranks waiting.
    func abortOnFailure<T>(_ body: () throws -> T) -> T {
        do { return try body() } catch {
            FileHandle.standardError.write(Data("error: rank \(rank) of \(worldSize): \(error)\n".utf8))
            communicator.abort(code: 1)
        }
    }
}
