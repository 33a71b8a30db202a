import Foundation
import XCTest

@testable import Checkpoints

final class PickleTests: XCTestCase {
    /// Expected bytes produced by CPython 3.11.7's pickle (`pickle.dumps(value, protocol=4)`), pasted as literals.
    static let cpython: [(PickleValue, [UInt8])] = {
        var dict = PickleDict()
        dict[.string("a")] = .list([.int(1), .float(2.5), .none, .bool(true)])
        dict[.string("b")] = .bytes(Array("xy".utf8))
        dict[.string("c")] = .tuple([])
        dict[.string("d")] = .list([.int(7)])
        let ints: [Int] = [-1, -129, -32769, 1 << 31, -(1 << 31) - 1, 255, 256, 65535, 65536, -(1 << 31), 1 << 40, -(1 << 39), Int.max, Int.min]
        return [
            // pickle.dumps((1000002, 500, "皮卡丘"), protocol=4)
            (
                .tuple([.int(1000002), .int(500), .string("皮卡丘")]),
                [
                    0x80, 0x04, 0x95, 0x17, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4a, 0x42, 0x42, 0x0f, 0x00, 0x4d, 0xf4, 0x01, 0x8c, 0x09,
                    0xe7, 0x9a, 0xae, 0xe5, 0x8d, 0xa1, 0xe4, 0xb8, 0x98, 0x94, 0x87, 0x94, 0x2e,
                ]
            ),
            // pickle.dumps((123, 456, "文本"), protocol=4)
            (
                .tuple([.int(123), .int(456), .string("文本")]),
                [
                    0x80, 0x04, 0x95, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4b, 0x7b, 0x4d, 0xc8, 0x01, 0x8c, 0x06, 0xe6, 0x96, 0x87,
                    0xe6, 0x9c, 0xac, 0x94, 0x87, 0x94, 0x2e,
                ]
            ),
            // pickle.dumps((0, 0, ""), protocol=4)
            (
                .tuple([.int(0), .int(0), .string("")]),
                [0x80, 0x04, 0x95, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4b, 0x00, 0x4b, 0x00, 0x8c, 0x00, 0x94, 0x87, 0x94, 0x2e]
            ),
            // pickle.dumps((-1, -129, -32769, 2**31, -2**31-1, 255, 256, 65535, 65536, -2**31, 2**40, -2**39, 2**63-1, -2**63), protocol=4)
            (
                .tuple(ints.map { .int($0) }),
                [
                    0x80, 0x04, 0x95, 0x56, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x4a, 0xff, 0xff, 0xff, 0xff, 0x4a, 0x7f, 0xff, 0xff,
                    0xff, 0x4a, 0xff, 0x7f, 0xff, 0xff, 0x8a, 0x05, 0x00, 0x00, 0x00, 0x80, 0x00, 0x8a, 0x05, 0xff, 0xff, 0xff, 0x7f, 0xff, 0x4b,
                    0xff, 0x4d, 0x00, 0x01, 0x4d, 0xff, 0xff, 0x4a, 0x00, 0x00, 0x01, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x80, 0x8a, 0x06, 0x00, 0x00,
                    0x00, 0x00, 0x00, 0x01, 0x8a, 0x05, 0x00, 0x00, 0x00, 0x00, 0x80, 0x8a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                    0x8a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x74, 0x94, 0x2e,
                ]
            ),
            // pickle.dumps({"a": [1, 2.5, None, True], "b": b"xy", "c": (), "d": [7]}, protocol=4)
            (
                .dict(dict),
                [
                    0x80, 0x04, 0x95, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d, 0x94, 0x28, 0x8c, 0x01, 0x61, 0x94, 0x5d, 0x94, 0x28,
                    0x4b, 0x01, 0x47, 0x40, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4e, 0x88, 0x65, 0x8c, 0x01, 0x62, 0x94, 0x43, 0x02, 0x78,
                    0x79, 0x94, 0x8c, 0x01, 0x63, 0x94, 0x29, 0x8c, 0x01, 0x64, 0x94, 0x5d, 0x94, 0x4b, 0x07, 0x61, 0x75, 0x2e,
                ]
            ),
            // pickle.dumps((42,), protocol=4)
            (.tuple([.int(42)]), [0x80, 0x04, 0x95, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4b, 0x2a, 0x85, 0x94, 0x2e]),
            // pickle.dumps((), protocol=4)
            (.tuple([]), [0x80, 0x04, 0x29, 0x2e]),
        ]
    }()

    /// CPython's bytes for values with long strings (framing rules), run-length encoded as (byte, repeat count).
    static let cpythonFramed: [(PickleValue, [(UInt8, Int)])] = [
        // pickle.dumps((1, "a"*40000, "b"*40000, "c"*40000), protocol=4): the first frame closes once it passes 64 KiB
        (
            .tuple([
                .int(1), .string(String(repeating: "a", count: 40000)), .string(String(repeating: "b", count: 40000)),
                .string(String(repeating: "c", count: 40000)),
            ]),
            [
                (0x80, 1), (0x04, 1), (0x95, 1), (0x8f, 1), (0x38, 1), (0x01, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x28, 1),
                (0x4b, 1), (0x01, 1), (0x58, 1), (0x40, 1), (0x9c, 1), (0x00, 1), (0x00, 1), (0x61, 40000), (0x94, 1), (0x58, 1), (0x40, 1),
                (0x9c, 1), (0x00, 1), (0x00, 1), (0x62, 40000), (0x94, 1), (0x95, 1), (0x49, 1), (0x9c, 1), (0x00, 1), (0x00, 1), (0x00, 1),
                (0x00, 1), (0x00, 1), (0x00, 1), (0x58, 1), (0x40, 1), (0x9c, 1), (0x00, 1), (0x00, 1), (0x63, 40000), (0x94, 1), (0x74, 1),
                (0x94, 1), (0x2e, 1),
            ]
        ),
        // pickle.dumps((1, "a"*70000, "b"), protocol=4): a payload over 64 KiB is written outside any frame
        (
            .tuple([.int(1), .string(String(repeating: "a", count: 70000)), .string("b")]),
            [
                (0x80, 1), (0x04, 1), (0x4b, 1), (0x01, 1), (0x58, 1), (0x70, 1), (0x11, 1), (0x01, 1), (0x00, 1), (0x61, 70000), (0x95, 1),
                (0x08, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x94, 1), (0x8c, 1), (0x01, 1), (0x62, 1),
                (0x94, 1), (0x87, 1), (0x94, 1), (0x2e, 1),
            ]
        ),
        // pickle.dumps((1, "a"*300, "b"*40000, "c"*40000), protocol=4)
        (
            .tuple([
                .int(1), .string(String(repeating: "a", count: 300)), .string(String(repeating: "b", count: 40000)),
                .string(String(repeating: "c", count: 40000)),
            ]),
            [
                (0x80, 1), (0x04, 1), (0x95, 1), (0xc4, 1), (0x39, 1), (0x01, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x00, 1), (0x28, 1),
                (0x4b, 1), (0x01, 1), (0x58, 1), (0x2c, 1), (0x01, 1), (0x00, 1), (0x00, 1), (0x61, 300), (0x94, 1), (0x58, 1), (0x40, 1), (0x9c, 1),
                (0x00, 1), (0x00, 1), (0x62, 40000), (0x94, 1), (0x58, 1), (0x40, 1), (0x9c, 1), (0x00, 1), (0x00, 1), (0x63, 40000), (0x94, 1),
                (0x74, 1), (0x94, 1), (0x2e, 1),
            ]
        ),
    ]

    func testEncoderMatchesCPythonBytes() throws {
        for (value, bytes) in Self.cpython {
            XCTAssertEqual(try PickleEncoder.encode(value), bytes, "\(value)")
        }
        for (i, (value, runs)) in Self.cpythonFramed.enumerated() {
            let bytes = runs.flatMap { Array(repeating: $0.0, count: $0.1) }
            XCTAssertTrue(try PickleEncoder.encode(value) == bytes, "framed case \(i)")
        }
    }

    func testDecoderReadsCPythonBytes() throws {
        for (value, bytes) in Self.cpython {
            XCTAssertEqual(try PickleValue.unpickle(bytes), value)
        }
        for (value, runs) in Self.cpythonFramed {
            XCTAssertTrue(try PickleValue.unpickle(runs.flatMap { Array(repeating: $0.0, count: $0.1) }) == value)
        }
    }

    /// `model.state_dict()` is an OrderedDict with a `_metadata` attribute, pickled as a BUILD after the items
    /// (every released cn-clip checkpoint has one); the attribute must not become a key. Bytes from CPython 3.11:
    /// `d = OrderedDict(a=1, b=2); d._metadata = OrderedDict([("", {"version": 1}), ("visual", {"version": 1})]);
    /// pickle.dumps(d, protocol=2)`.
    func testOrderedDictAttributesAreNotItems() throws {
        let bytes: [UInt8] = [
            128, 2, 99, 99, 111, 108, 108, 101, 99, 116, 105, 111, 110, 115, 10, 79, 114, 100, 101, 114, 101, 100, 68,
            105, 99, 116, 10, 113, 0, 41, 82, 113, 1, 40, 88, 1, 0, 0, 0, 97, 113, 2, 75, 1, 88, 1, 0, 0, 0, 98, 113, 3, 75, 2, 117, 125,
            113, 4, 88, 9, 0, 0, 0, 95, 109, 101, 116, 97, 100, 97, 116, 97, 113, 5, 104, 0, 41, 82, 113, 6, 40, 88, 0, 0, 0, 0, 113, 7,
            125, 113, 8, 88, 7, 0, 0, 0, 118, 101, 114, 115, 105, 111, 110, 113, 9, 75, 1, 115, 88, 6, 0, 0, 0, 118, 105, 115, 117, 97,
            108, 113, 10, 125, 113, 11, 104, 9, 75, 1, 115, 117, 115, 98, 46,
        ]
        let value = try PickleDecoder().decode(bytes)
        guard case .dict(let d) = value else { return XCTFail("not a dict: \(value)") }
        XCTAssertEqual(d.keys, [.string("a"), .string("b")])
        XCTAssertEqual(d[.string("b")], .int(2))
    }

    func testLMDBPairRecord() throws {
        let value = try PickleValue.unpickle(Self.cpython[0].1, source: "pairs/0")
        guard case .tuple(let t) = value else { return XCTFail("not a tuple") }
        XCTAssertEqual(t[0].intValue, 1000002)
        XCTAssertEqual(t[1].intValue, 500)
        XCTAssertEqual(t[2].stringValue, "皮卡丘")
    }

    func testMemoSeesLaterMutations() throws {
        // {'a': L, 'b': L} where L = [1, 2] is filled after it was memoized: both keys must see the items.
        let bytes: [UInt8] =
            [0x80, 0x02] + Op.emptyDict + Op.mark + Op.unicode("a") + [0x5d] + Op.binput(0) + Op.mark + Op.int1(1) + Op.int1(2) + [0x65]
            + Op.unicode("b") + Op.binget(0) + Op.setitems + Op.stop
        XCTAssertEqual(try PickleValue.unpickle(bytes)["b"], .list([.int(1), .int(2)]))
        XCTAssertEqual(try PickleValue.unpickle(bytes)["a"], .list([.int(1), .int(2)]))
    }

    func testProtocol2BytesAndOrderedDictForms() throws {
        // b'\x00\xff' as protocol 2 pickles it: _codecs.encode('\x00\xff', 'latin1')
        let bytes: [UInt8] =
            [0x80, 0x02] + Op.global("_codecs", "encode") + Op.unicode("\u{00}\u{ff}") + Op.unicode("latin1") + Op.tuple2 + Op.reduce + Op.stop
        XCTAssertEqual(try PickleValue.unpickle(bytes), .bytes([0x00, 0xff]))
        // OrderedDict([('x', 1)]) via REDUCE with a list of pairs, then a LONG1 and a BINFLOAT.
        let od: [UInt8] =
            [0x80, 0x02] + Op.global("collections", "OrderedDict") + Op.mark + [0x5d] + Op.mark + Op.unicode("x") + Op.int1(1) + Op.tuple2 + [0x65]
            + Op.tuple + Op.reduce + Op.stop
        XCTAssertEqual(try PickleValue.unpickle(od)["x"], .int(1))
        let long: [UInt8] = [0x80, 0x02, 0x8a, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x2e]
        XCTAssertEqual(try PickleValue.unpickle(long), .int(Int.max))
        let tooLong: [UInt8] = [0x80, 0x02, 0x8a, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x2e]
        assertCheckpointError(try PickleValue.unpickle(tooLong)) { if case .pickle(_, 2, _) = $0 { return true } else { return false } }
    }

    /// numpy scalars, as cn-clip's `cosine_lr` leaves them in the optimizer's `lr` (np.cos gives numpy.float64):
    /// `pickle.dumps({"lr": np.float64(0.0009330127018922195), "i": np.int64(-3), "f": np.float32(1.5),
    /// "b": np.bool_(True), "be": np.array([2.5], dtype=">f8")[0], "u": np.uint8(200), "h": np.float16(0.25)}, protocol=P)`
    /// from CPython 3.11 with numpy 2.4 (protocol 2 as torch.save writes it, and 4).
    func testNumpyScalarsAsCnClipOptimizersHoldThem() throws {
        let protocol2 =
            "80027d71002858020000006c727101636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7102"
            + "636e756d70790a64747970650a71035802000000663871048988877105527106284b0358010000003c71074e4e4e4aff"
            + "ffffff4affffffff4b0074710862635f636f646563730a656e636f64650a7109580d000000c3aac3ad4bc285c2adc292"
            + "4e3f710a58060000006c6174696e31710b86710c52710d86710e52710f58010000006971106802680358020000006938"
            + "71118988877112527113284b0368074e4e4e4affffffff4affffffff4b007471146268095810000000c3bdc3bfc3bfc3"
            + "bfc3bfc3bfc3bfc3bf7115680b867116527117867118527119580100000066711a6802680358020000006634711b8988"
            + "87711c52711d284b0368074e4e4e4affffffff4affffffff4b0074711e62680958050000000000c3803f711f680b8671"
            + "205271218671225271235801000000627124680268035802000000623171258988877126527127284b0358010000007c"
            + "71284e4e4e4affffffff4affffffff4b00747129626809580100000001712a680b86712b52712c86712d52712e580200"
            + "00006265712f680268066809580800000000000000000004407130680b86713152713286713352713458010000007571"
            + "35680268035802000000753171368988877137527138284b0368284e4e4e4affffffff4affffffff4b00747139626809"
            + "5802000000c388713a680b86713b52713c86713d52713e580100000068713f6802680358020000006632714089888771"
            + "41527142284b0368074e4e4e4affffffff4affffffff4b00747143626809580200000000347144680b86714552714686" + "7147527148752e"
        let protocol4 =
            "80049592010000000000007d94288c026c72948c166e756d70792e5f636f72652e6d756c74696172726179948c067363"
            + "616c61729493948c056e756d7079948c0564747970659493948c02663894898887945294284b038c013c944e4e4e4aff"
            + "ffffff4affffffff4b007494624308eaed4b85ad924e3f94869452948c016994680468078c0269389489888794529428"
            + "4b03680b4e4e4e4affffffff4affffffff4b007494624308fdffffffffffffff94869452948c016694680468078c0266"
            + "3494898887945294284b03680b4e4e4e4affffffff4affffffff4b0074946243040000c03f94869452948c0162946804"
            + "68078c02623194898887945294284b038c017c944e4e4e4affffffff4affffffff4b0074946243010194869452948c02"
            + "6265946804680a4308000000000000044094869452948c017594680468078c02753194898887945294284b0368244e4e"
            + "4e4affffffff4affffffff4b007494624301c894869452948c016894680468078c02663294898887945294284b03680b"
            + "4e4e4e4affffffff4affffffff4b00749462430200349486945294752e"
        for hex in [protocol2, protocol4] {
            let bytes = stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
                let a = hex.index(hex.startIndex, offsetBy: i)
                return UInt8(hex[a..<hex.index(a, offsetBy: 2)], radix: 16)!
            }
            let v = try PickleValue.unpickle(bytes)
            XCTAssertEqual(v["lr"], .float(0.0009330127018922195))
            XCTAssertEqual(v["i"], .int(-3))
            XCTAssertEqual(v["f"], .float(1.5))
            XCTAssertEqual(v["b"], .bool(true))
            XCTAssertEqual(v["be"], .float(2.5))
            XCTAssertEqual(v["u"], .int(200))
            XCTAssertEqual(v["h"], .float(0.25))
        }
        // Anything else from numpy is still refused by name.
        let array: [UInt8] = [0x80, 0x02] + Op.global("numpy.core.multiarray", "_reconstruct") + Op.mark + Op.tuple + Op.reduce + Op.stop
        assertCheckpointError(try PickleValue.unpickle(array)) {
            if case .unsupportedGlobal(_, _, "numpy.core.multiarray._reconstruct") = $0 { return true } else { return false }
        }
    }

    func testUnknownGlobalIsRefusedByName() {
        let bytes: [UInt8] = [0x80, 0x02] + Op.global("os", "system") + Op.unicode("rm -rf /") + [0x85] + Op.reduce + Op.stop
        let e = assertCheckpointError(try PickleValue.unpickle(bytes, source: "record 7")) {
            if case .unsupportedGlobal("record 7", 2, "os.system") = $0 { return true } else { return false }
        }
        XCTAssertTrue(e?.description.contains("os.system") ?? false)
        // STACK_GLOBAL (protocol 4) is checked the same way.
        let stack: [UInt8] = [0x80, 0x04, 0x8c, 0x08] + Array("builtins".utf8) + [0x8c, 0x04] + Array("eval".utf8) + [0x93, 0x2e]
        assertCheckpointError(try PickleValue.unpickle(stack)) {
            if case .unsupportedGlobal(_, _, "builtins.eval") = $0 { return true } else { return false }
        }
    }

    func testMalformedStreamsAreErrors() {
        func isPickle(_ e: CheckpointError) -> Bool { if case .pickle = e { return true } else { return false } }
        assertCheckpointError(try PickleValue.unpickle([0x80, 0x02, 0x4b]), isPickle)  // truncated argument
        assertCheckpointError(try PickleValue.unpickle([0x80, 0x02, 0x4b, 0x01]), isPickle)  // no STOP
        assertCheckpointError(try PickleValue.unpickle([0x80, 0x02, 0x68, 0x05, 0x2e]), isPickle)  // memo miss
        assertCheckpointError(try PickleValue.unpickle([0x80, 0x02, 0xff, 0x2e]), isPickle)  // unknown opcode
        assertCheckpointError(try PickleValue.unpickle([0x80, 0x02, 0x2e]), isPickle)  // STOP on empty stack
        // A tensor without a resolver.
        let t: [UInt8] =
            [0x80, 0x02] + Op.global("torch._utils", "_rebuild_tensor_v2") + Op.mark + Op.mark + Op.unicode("storage")
            + Op.global("torch", "FloatStorage") + Op.unicode("0") + Op.unicode("cpu") + Op.int1(1) + Op.tuple + Op.binpersid
            + Op.int1(0) + Op.emptyTuple + Op.emptyTuple + Op.newFalse + Op.tuple + Op.reduce + Op.stop
        assertCheckpointError(try PickleValue.unpickle(t), isPickle)
    }

    func testEncodeDecodeRoundTrip() throws {
        var d = PickleDict()
        d[.int(3)] = .string("three")
        d[.string("nested")] = .list([.tuple([.float(-0.5), .bytes([1, 2, 3])]), .none])
        let values: [PickleValue] = [.dict(d), .list(Array(repeating: .int(9), count: 2500)), .string(String(repeating: "长", count: 30000))]
        for v in values { XCTAssertTrue(try PickleValue.unpickle(try PickleEncoder.encode(v)) == v) }
        assertCheckpointError(try PickleEncoder.encode(.tensor(CheckpointTensor(shape: [1], integers: [1])))) {
            if case .pickle = $0 { return true } else { return false }
        }
    }
}
