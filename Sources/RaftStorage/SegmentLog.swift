// The Raft log and hard state as append-only segment files (docs/adr/0003-raft-storage.md).
import Foundation
import Raft
import Support

/// CRC-32C (Castagnoli), eight bytes per step ("slicing by 8").
enum CRC32C {
    static let table: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    /// Continues `crc` (0 to start) over `bytes`.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while i + 8 <= n {
                let lo = bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian ^ c
                let hi = bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = (c >> 8) ^ t[Int((c ^ UInt32(bytes[i])) & 0xFF)]
                i += 1
            }
        }
        return ~c
    }
}

/// The Raft log and hard state in numbered segment files in one directory, each written only at
/// its end. A save is one `pwrite` of its records and one `fdatasync`, instead of a SQLite
/// transaction (B-tree pages, WAL frames, checkpoints, deletes).
///
/// File `<16 hex digits>.log` (the segment's number): a 16-byte header (`p2posRL1`, the number,
/// little-endian) and records `[u32 length][u32 CRC-32C of length and body][body]`. Bodies:
/// `1` entry (index u64, term u64, kind u8, data), `2` hard state (term u64, commit u64, has-vote
/// u8, vote UTF-8), `3` reset (index u64, term u64: a snapshot replaced the whole log).
///
/// Reading replays the segments in order: an entry at an index already held drops that entry
/// and every later one (a leader overwrote a conflicting suffix); a reset drops all; the last
/// hard state wins. Only the newest segment is written, and every new segment starts with the
/// current hard state, so older segments can be deleted once a snapshot covers their entries.
/// A crash can leave a torn record at the end of the newest segment — it was never
/// acknowledged (its `fdatasync` had not returned) — and opening cuts it off. A bad record
/// anywhere else is corruption and refuses to load.
final class SegmentLog {
    static let magic: [UInt8] = Array("p2posRL1".utf8)
    static let headerBytes = 16
    /// A record body larger than this is damage, not data (entries are bounded far below it).
    static let maxRecordBytes = 256 << 20

    enum RecordType: UInt8 { case entry = 1, hardState = 2, reset = 3 }

    let dir: String
    let sync: Bool
    /// A new segment is started when the active one reaches this size.
    let segmentBytes: Int
    private var fd: Int32 = -1
    private var activeSeq: UInt64 = 0
    /// Where the next record goes in the active segment (its records end here).
    private(set) var activeSize = 0
    private var activeMaxIndex: UInt64 = 0
    /// Closed segments and the highest entry index each holds.
    private var closed: [(seq: UInt64, maxIndex: UInt64)] = []
    /// The hard state most recently written (every new segment starts with it).
    private(set) var hardState: HardState?
    /// The index of the last entry in the log, by the replay rules (0 when empty).
    private(set) var lastIndex: UInt64 = 0
    private var buf: [UInt8] = []

    /// Opens the log in `dir` (which must exist), cutting off a torn record at the end of the
    /// newest segment; with no segment yet, starts the first one. `snapshotIndex`: entries up to
    /// it are covered by the stored snapshot (a gap below it is not damage).
    init(dir: String, snapshotIndex: UInt64, sync: Bool = true, segmentBytes: Int = 64 << 20) throws {
        self.dir = dir
        self.sync = sync
        self.segmentBytes = segmentBytes
        let seqs = try SegmentLog.segmentNumbers(dir)
        var replay = Replay(after: snapshotIndex, keepEntries: false)
        for (i, seq) in seqs.enumerated() {
            let isLast = i == seqs.count - 1
            var maxIndex: UInt64 = 0
            let path = segmentPath(seq)
            let bytes = try SegmentLog.readFile(path)
            let scanned = try SegmentLog.scan(bytes, seq: seq, path: path, mode: isLast ? .newest : .exact) { type, body in
                try replay.apply(type, body, path: path)
                if type == .entry { maxIndex = max(maxIndex, replay.lastSeen ?? 0) }
            }
            if isLast {
                if scanned.end < SegmentLog.headerBytes {
                    // The segment was being created: nothing in it was ever acknowledged.
                    unlink(path)
                    Log.warn("raft", "log_segment_removed", ["file": path, "reason": "incomplete header"])
                    continue
                }
                if scanned.droppedBytes > 0 {
                    // Cut the torn write off and reserve the space again, so that nothing of it
                    // is left after the records written next.
                    let fd = open(path, O_WRONLY | O_CLOEXEC)
                    guard fd >= 0, ftruncate(fd, off_t(scanned.end)) == 0, fsync(fd) == 0 else {
                        let e = errno
                        if fd >= 0 { close(fd) }
                        throw P2POSError("RAFT_STORAGE", "cannot cut the torn end of \(path): \(String(cString: strerror(e)))")
                    }
                    close(fd)
                    Log.warn("raft", "log_tail_truncated", ["file": path, "at": scanned.end, "bytes": scanned.droppedBytes,
                                                            "reason": "a torn write at the end of the newest segment (never acknowledged)"])
                }
                activeSeq = seq
                activeSize = scanned.end
                activeMaxIndex = maxIndex
            } else {
                closed.append((seq, maxIndex))
            }
        }
        hardState = replay.hardState
        lastIndex = replay.lastSeen ?? (replay.sawReset ? replay.resetIndex : 0)
        if activeSeq == 0 {
            try startSegment(seq: (closed.last?.seq ?? 0) + 1)
        } else {
            fd = open(segmentPath(activeSeq), O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw P2POSError("RAFT_STORAGE", "cannot open \(segmentPath(activeSeq)): \(String(cString: strerror(errno)))") }
            reserve()
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    func segmentPath(_ seq: UInt64) -> String {
        dir + "/" + SegmentLog.hex16(seq) + ".log"
    }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    /// Segment numbers in `dir`, ascending (other files are ignored).
    static func segmentNumbers(_ dir: String) throws -> [UInt64] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw P2POSError("RAFT_STORAGE", "cannot list \(dir): \(error.localizedDescription)")
        }
        return names.compactMap { n -> UInt64? in
            guard n.count == 20, n.hasSuffix(".log") else { return nil }
            return UInt64(n.prefix(16), radix: 16)
        }.sorted()
    }

    // MARK: writing

    /// Appends `entries` (replacing any held at or after the first one's index), then the hard
    /// state; durable when this returns.
    func append(entries: [Entry], hardState hs: HardState?) throws {
        if entries.isEmpty && hs == nil { return }
        if activeSize >= segmentBytes { try rotate() }
        buf.removeAll(keepingCapacity: true)
        try write(entries: entries, hardState: hs)
    }

    /// Encodes `entries` and then the hard state after what `buf` already holds, writes it all
    /// durably and records what it changed.
    private func write(entries: [Entry], hardState hs: HardState?) throws {
        for e in entries { encodeEntry(e) }
        if let hs { encodeHardState(hs) }
        try writeBuffer()
        if let last = entries.last {
            lastIndex = last.index
            activeMaxIndex = max(activeMaxIndex, last.index)
        }
        if let hs { hardState = hs }
    }

    /// A snapshot at (`index`, `term`) replaced the whole log: a new segment starts with a reset
    /// record, then `entries` and the hard state; the older segments are deleted once that is durable.
    func reset(index: UInt64, term: UInt64, entries: [Entry], hardState hs: HardState?) throws {
        try rotate()
        buf.removeAll(keepingCapacity: true)
        beginRecord(.reset)
        put64(index)
        put64(term)
        endRecord()
        lastIndex = index
        try write(entries: entries, hardState: hs)
        for c in closed { unlink(segmentPath(c.seq)) }
        closed.removeAll()
    }

    /// Deletes closed segments whose entries are all at or below `index` (a snapshot covers them).
    func dropSegments(through index: UInt64) {
        for path in detachSegments(through: index) { unlink(path) }
    }

    /// Forgets the closed segments whose entries are all at or below `index` and returns their
    /// paths, for the caller to delete (the log never reads or reuses them again).
    func detachSegments(through index: UInt64) -> [String] {
        var paths: [String] = []
        while let first = closed.first, first.maxIndex <= index {
            paths.append(segmentPath(first.seq))
            closed.removeFirst()
        }
        return paths
    }

    /// Number of segment files (closed and active).
    var segmentCount: Int { closed.count + 1 }

    /// Closes the active segment and starts the next, beginning with the current hard state.
    private func rotate() throws {
        let old = (activeSeq, activeMaxIndex)
        try startSegment(seq: activeSeq + 1)
        closed.append(old)
    }

    /// Creates segment `seq` with its header and the current hard state, durable (file and
    /// directory entry) before any record is acknowledged from it, and makes it the active one.
    private func startSegment(seq: UInt64) throws {
        let path = segmentPath(seq)
        let nfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard nfd >= 0 else { throw P2POSError("RAFT_STORAGE", "cannot create \(path): \(String(cString: strerror(errno)))") }
        if fd >= 0 { close(fd) }
        fd = nfd
        reserve()
        activeSeq = seq
        activeSize = 0
        activeMaxIndex = 0
        buf.removeAll(keepingCapacity: true)
        buf.append(contentsOf: SegmentLog.magic)
        put64(seq)
        if let hs = hardState { encodeHardState(hs) }
        try writeBuffer()
        if sync { try SegmentLog.syncDirectory(dir) }
    }

    /// Reserves the active segment's full size on disk (reads as zeros), so that a sync after an
    /// append does not also allocate blocks and grow the file: measured here, an `fdatasync` of
    /// 600 appended bytes takes ~160 µs in reserved space against ~220 µs at the end of a growing
    /// file (docs/benchmarks.md). On a file system without `fallocate`, glibc reserves by writing a zero
    /// into every block instead: slower, once per segment, same result. A failure (a full disk) is
    /// ignored here; the file then grows as written and a write that cannot be stored fails the save.
    private func reserve() {
        _ = posix_fallocate(fd, 0, off_t(segmentBytes))
    }

    private func writeBuffer() throws {
        try buf.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = pwrite(fd, b.baseAddress! + off, b.count - off, off_t(activeSize + off))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw P2POSError("RAFT_STORAGE", "cannot write \(segmentPath(activeSeq)): \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
        if sync && fdatasync(fd) != 0 {
            throw P2POSError("RAFT_STORAGE", "cannot sync \(segmentPath(activeSeq)): \(String(cString: strerror(errno)))")
        }
        activeSize += buf.count
    }

    static func syncDirectory(_ dir: String) throws {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw P2POSError("RAFT_STORAGE", "cannot open directory \(dir): \(String(cString: strerror(errno)))") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw P2POSError("RAFT_STORAGE", "cannot sync directory \(dir): \(String(cString: strerror(errno)))") }
    }

    private var recordStart = 0

    private func beginRecord(_ t: RecordType) {
        recordStart = buf.count
        buf.append(contentsOf: [0, 0, 0, 0, 0, 0, 0, 0])
        buf.append(t.rawValue)
    }

    private func endRecord() {
        let len = UInt32(buf.count - recordStart - 8)
        buf.withUnsafeMutableBytes { b in
            b.storeBytes(of: len.littleEndian, toByteOffset: recordStart, as: UInt32.self)
            let crc = SegmentLog.recordCRC(length: UnsafeRawBufferPointer(rebasing: b[recordStart..<recordStart + 4]),
                                           body: UnsafeRawBufferPointer(rebasing: b[(recordStart + 8)...]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: recordStart + 4, as: UInt32.self)
        }
    }

    static func recordCRC(length: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) -> UInt32 {
        CRC32C.update(CRC32C.update(0, length), body)
    }

    private func put64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { buf.append(contentsOf: $0) }
    }

    private func encodeEntry(_ e: Entry) {
        beginRecord(.entry)
        put64(e.index)
        put64(e.term)
        buf.append(e.kind.rawValue)
        buf.append(contentsOf: e.data)
        endRecord()
    }

    private func encodeHardState(_ hs: HardState) {
        beginRecord(.hardState)
        put64(hs.term)
        put64(hs.commit)
        if let v = hs.vote {
            buf.append(1)
            buf.append(contentsOf: Array(v.utf8))
        } else {
            buf.append(0)
        }
        endRecord()
    }

    // MARK: reading

    /// What replaying records gives.
    struct Replay {
        /// Entries at or below this index are not kept (a snapshot covers them), but still count
        /// for the overwrite rule.
        let after: UInt64
        /// Whether entries after `after` are collected (not when only the indexes are wanted).
        let keepEntries: Bool
        var entries: [Entry] = []
        var hardState: HardState?
        /// Index of the last entry replayed (nil at the start and right after a reset).
        var lastSeen: UInt64?
        var sawReset = false
        var resetIndex: UInt64 = 0
        /// The term of the entry at `after` as the log holds it (nil when not held).
        var termAtAfter: UInt64?

        init(after: UInt64, keepEntries: Bool = true) {
            self.after = after
            self.keepEntries = keepEntries
        }

        mutating func apply(_ type: RecordType, _ body: UnsafeRawBufferPointer, path: String) throws {
            switch type {
            case .entry:
                guard body.count >= 17, let kind = EntryKind(rawValue: body[16]) else { throw storageCorrupt(path, "malformed log entry") }
                let index = body.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
                let term = body.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
                if let last = lastSeen, index > last + 1 {
                    // Segments deleted after a compaction may come back after a machine crash
                    // (the unlinks are not synced) while later ones stay gone: a gap the snapshot
                    // covers is harmless. Any other gap lost acknowledged entries.
                    guard index - 1 <= after else {
                        throw storageCorrupt(path, "log entries jump from index \(last) to \(index)")
                    }
                    entries.removeAll(keepingCapacity: true)
                    termAtAfter = nil
                } else if let last = lastSeen, index <= last {
                    // A leader overwrote a conflicting suffix: drop the held entries from `index` on.
                    if let first = entries.first?.index, index <= first {
                        entries.removeAll(keepingCapacity: true)
                    } else if !entries.isEmpty {
                        entries.removeLast(Int(min(UInt64(entries.count), last - index + 1)))
                    }
                    if index <= after { termAtAfter = nil }
                } else if lastSeen == nil && sawReset && index != resetIndex + 1 {
                    throw storageCorrupt(path, "log entry \(index) follows a snapshot at \(resetIndex)")
                }
                lastSeen = index
                if index == after { termAtAfter = term }
                if index > after && keepEntries {
                    entries.append(Entry(term: term, index: index, kind: kind, data: Array(body[17...])))
                }
            case .hardState:
                guard body.count >= 17 else { throw storageCorrupt(path, "malformed hard state") }
                let term = body.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
                let commit = body.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
                var vote: String?
                switch body[16] {
                case 0: guard body.count == 17 else { throw storageCorrupt(path, "malformed hard state") }
                case 1:
                    guard let v = String(validating: body[17...], as: UTF8.self), !v.isEmpty else { throw storageCorrupt(path, "malformed vote") }
                    vote = v
                default: throw storageCorrupt(path, "malformed hard state")
                }
                hardState = HardState(term: term, vote: vote, commit: commit)
            case .reset:
                guard body.count == 16 else { throw storageCorrupt(path, "malformed reset record") }
                resetIndex = body.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
                let resetTerm = body.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
                entries.removeAll(keepingCapacity: true)
                lastSeen = nil
                sawReset = true
                termAtAfter = resetIndex == after ? resetTerm : nil
            }
        }
    }

    /// Replays every segment: the hard state, the entries after `after`, the term of the entry
    /// at `after` if the log holds it, and the last reset.
    func read(after: UInt64) throws -> Replay {
        var replay = Replay(after: after)
        for seq in closed.map(\.seq) + [activeSeq] {
            let path = segmentPath(seq)
            let bytes = try SegmentLog.readFile(path, limit: seq == activeSeq ? activeSize : nil)
            _ = try SegmentLog.scan(bytes, seq: seq, path: path, mode: .exact) { type, body in
                try replay.apply(type, body, path: path)
            }
        }
        return replay
    }

    static func readFile(_ path: String, limit: Int? = nil) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw P2POSError("RAFT_STORAGE", "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw P2POSError("RAFT_STORAGE", "cannot stat \(path): \(String(cString: strerror(errno)))") }
        let size = min(Int(st.st_size), limit ?? Int.max)
        var out = [UInt8](repeating: 0, count: size)
        var off = 0
        try out.withUnsafeMutableBytes { b in
            while off < size {
                let n = pread(fd, b.baseAddress! + off, size - off, off_t(off))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw P2POSError("RAFT_STORAGE", "cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                off += n
            }
        }
        if off < size { out.removeLast(size - off) }
        return out
    }

    /// How `scan` treats what follows the last good record.
    enum ScanMode {
        /// The newest segment at open: a torn write's remains end the walk.
        case newest
        /// Any other segment, or the newest one up to its known end: only zeros (space
        /// reserved ahead of writing) may follow the records.
        case exact
    }

    /// Where the good records of a segment end, and over how many bytes after that point a torn
    /// write left non-zero data (`newest` only).
    struct ScanEnd {
        var end: Int
        var droppedBytes: Int
    }

    static let sector = 512
    /// Compared against to find zeros (memcmp is vectorised).
    static let zeroBlock = [UInt8](repeating: 0, count: 1 << 16)

    /// Checks the header and walks the records, calling `body` for each good one. A segment is
    /// reserved at its full size when it starts, so the records are followed by zeros. In the
    /// newest segment at open, a crash during a write may have left a torn record: one cut off by
    /// the end of the file, or containing a whole disk sector's worth of zeros (a sector that
    /// never reached the disk), or a zero record header. The walk ends there; whatever a torn
    /// write left after it was never acknowledged. A damaged record that is not torn is
    /// corruption, as is anything but zeros after the records of any other segment.
    static func scan(_ bytes: [UInt8], seq: UInt64, path: String, mode: ScanMode,
                     _ body: (RecordType, UnsafeRawBufferPointer) throws -> Void) throws -> ScanEnd {
        try bytes.withUnsafeBytes { b in
            /// The first non-zero byte in `r`, or the last with `backwards` (whole zero blocks are
            /// skipped with memcmp, which is vectorised).
            func nonZero(_ r: Range<Int>, backwards: Bool = false) -> Int? {
                var lo = r.lowerBound, hi = r.upperBound
                while lo < hi {
                    let n = min(hi - lo, zeroBlock.count)
                    let at = backwards ? hi - n : lo
                    if zeroBlock.withUnsafeBytes({ memcmp(b.baseAddress! + at, $0.baseAddress!, n) }) != 0 {
                        let chunk = at..<(at + n)
                        return backwards ? chunk.last(where: { b[$0] != 0 }) : chunk.first(where: { b[$0] != 0 })
                    }
                    if backwards { hi -= n } else { lo += n }
                }
                return nil
            }
            func zeros(_ r: Range<Int>) -> Bool { nonZero(r) == nil }
            /// Whether a sector-aligned piece of `r` is all zeros.
            func hasZeroSector(_ r: Range<Int>) -> Bool {
                var start = r.lowerBound
                while start < r.upperBound {
                    let next = min(r.upperBound, (start / sector + 1) * sector)
                    if zeros(start..<next) { return true }
                    start = next
                }
                return false
            }
            /// Bytes from the first non-zero one in `r` to the last.
            func nonZeroSpan(_ r: Range<Int>) -> Int {
                guard let first = nonZero(r), let last = nonZero(r, backwards: true) else { return 0 }
                return last - first + 1
            }
            guard b.count >= headerBytes, Array(b[0..<8]) == magic,
                  b.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian == seq else {
                if mode == .newest && (b.count < headerBytes || zeros(0..<b.count)) { return ScanEnd(end: 0, droppedBytes: 0) }
                throw storageCorrupt(path, "not a p2pos log segment (bad header)")
            }
            var off = headerBytes
            while off < b.count {
                var torn = false
                if off + 8 > b.count {
                    torn = true
                } else if zeros(off..<off + 8) {
                    // The end of the records (the reserved space), or a header that never reached the disk.
                    if zeros(off..<b.count) { return ScanEnd(end: off, droppedBytes: 0) }
                    torn = true
                } else {
                    let len = Int(b.loadUnaligned(fromByteOffset: off, as: UInt32.self).littleEndian)
                    let crc = b.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self).littleEndian
                    if len < 1 || len > maxRecordBytes {
                        torn = hasZeroSector(off..<off + 8)
                    } else if off + 8 + len > b.count {
                        torn = true
                    } else {
                        let rec = UnsafeRawBufferPointer(rebasing: b[(off + 8)..<(off + 8 + len)])
                        if recordCRC(length: UnsafeRawBufferPointer(rebasing: b[off..<off + 4]), body: rec) == crc,
                           let type = RecordType(rawValue: rec[0]) {
                            try body(type, UnsafeRawBufferPointer(rebasing: rec[1...]))
                            off += 8 + len
                            continue
                        }
                        torn = hasZeroSector(off..<off + 8 + len)
                    }
                }
                guard mode == .newest && torn else {
                    throw storageCorrupt(path, "damaged record at byte \(off) of \(b.count)")
                }
                return ScanEnd(end: off, droppedBytes: nonZeroSpan(off..<b.count))
            }
            return ScanEnd(end: off, droppedBytes: 0)
        }
    }

    /// Writes a complete log — `hardState`, then `entries` — as segment 1 of a new directory
    /// `dir` (which must not exist yet), durable before this returns.
    static func create(dir: String, hardState: HardState?, entries: [Entry], sync: Bool) throws {
        guard mkdir(dir, 0o700) == 0 else {
            throw P2POSError("RAFT_STORAGE", "cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        // Starting segment 1 syncs the directory entry; the append syncs the records.
        try SegmentLog(dir: dir, snapshotIndex: 0, sync: sync).append(entries: entries, hardState: hardState)
    }
}
