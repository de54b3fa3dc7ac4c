/// Pure parsing of DNS response messages (RFC 1035 §4): header, question skip, TXT answers.
public enum DNSMessage {
    public static let typeTXT: UInt16 = 16
    public static let typeCNAME: UInt16 = 5
    public static let classIN: UInt16 = 1

    /// Response codes this module distinguishes.
    public enum RCode: Int, Sendable {
        case noError = 0, formErr = 1, servFail = 2, nxDomain = 3, notImp = 4, refused = 5
    }

    /// Parsed TXT answer: the response code and each TXT record's character-strings joined.
    public struct TXTAnswer: Sendable, Equatable {
        public var rcode: Int
        public var truncated: Bool
        public var records: [[UInt8]]

        public var strings: [String] { records.map { String(decoding: $0, as: UTF8.self) } }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { "malformed DNS response: \(reason)" }
    }

    /// Extract the TXT records of a response. Each record's character-strings are concatenated
    /// (long values are split into 255-byte pieces by publishers). Bounded: never reads past
    /// the message, follows no compression pointers (names are skipped, not decoded).
    public static func parseTXT(_ msg: [UInt8]) throws -> TXTAnswer {
        guard msg.count >= 12 else { throw ParseError(reason: "shorter than a header") }
        func u16(_ i: Int) throws -> Int {
            guard i + 2 <= msg.count else { throw ParseError(reason: "truncated at byte \(i)") }
            return Int(msg[i]) << 8 | Int(msg[i + 1])
        }
        let flags = try u16(2)
        guard flags & 0x8000 != 0 else { throw ParseError(reason: "not a response") }
        let rcode = flags & 0x000F
        let truncated = flags & 0x0200 != 0
        let qd = try u16(4), an = try u16(6)
        var pos = 12
        func skipName() throws {
            var steps = 0
            while true {
                guard pos < msg.count else { throw ParseError(reason: "name runs past the end") }
                let len = Int(msg[pos])
                if len & 0xC0 == 0xC0 {
                    guard pos + 2 <= msg.count else { throw ParseError(reason: "truncated pointer") }
                    pos += 2
                    return
                }
                guard len & 0xC0 == 0 else { throw ParseError(reason: "unsupported label type") }
                pos += 1
                if len == 0 { return }
                pos += len
                steps += 1
                guard steps <= 128 else { throw ParseError(reason: "too many labels") }
            }
        }
        for _ in 0..<qd {
            try skipName()
            pos += 4
        }
        var records: [[UInt8]] = []
        for _ in 0..<an {
            try skipName()
            let type = try u16(pos), cls = try u16(pos + 2)
            let rdlen = try u16(pos + 8)
            pos += 10
            guard pos + rdlen <= msg.count else { throw ParseError(reason: "record data runs past the end") }
            if type == Int(typeTXT) && cls == Int(classIN) {
                var value: [UInt8] = []
                var p = pos
                let end = pos + rdlen
                while p < end {
                    let l = Int(msg[p])
                    p += 1
                    guard p + l <= end else { throw ParseError(reason: "TXT string runs past its record") }
                    value.append(contentsOf: msg[p..<(p + l)])
                    p += l
                }
                records.append(value)
            }
            pos += rdlen
        }
        return TXTAnswer(rcode: rcode, truncated: truncated, records: records)
    }
}
