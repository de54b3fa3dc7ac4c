import Foundation

/// A growable contiguous byte buffer with separate read and write positions (loop-owned, not thread-safe).
final class ByteBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    private(set) var readIndex = 0
    private(set) var writeIndex = 0

    init(capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// Readable byte count.
    var count: Int { writeIndex - readIndex }
    var isEmpty: Bool { writeIndex == readIndex }
    var readPointer: UnsafeMutablePointer<UInt8> { base + readIndex }
    var writePointer: UnsafeMutablePointer<UInt8> { base + writeIndex }
    var writableCount: Int { capacity - writeIndex }

    subscript(i: Int) -> UInt8 { base[readIndex + i] }

    /// Make room for at least `n` more bytes after the write position.
    func reserve(_ n: Int) {
        if capacity - writeIndex >= n { return }
        let live = count
        if readIndex > 0 && capacity - live >= n && live <= capacity / 2 {
            if live > 0 { memmove(base, base + readIndex, live) }
            readIndex = 0
            writeIndex = live
            return
        }
        var newCap = capacity
        while newCap - live < n { newCap *= 2 }
        let nb = UnsafeMutablePointer<UInt8>.allocate(capacity: newCap)
        if live > 0 { memcpy(nb, base + readIndex, live) }
        base.deallocate()
        base = nb
        capacity = newCap
        readIndex = 0
        writeIndex = live
    }

    func commitWrite(_ n: Int) { writeIndex += n }

    func append(_ p: UnsafeRawPointer, _ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        memcpy(base + writeIndex, p, n)
        writeIndex += n
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { if let b = $0.baseAddress { append(b, $0.count) } }
    }

    func append(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { if let b = $0.baseAddress { append(b, $0.count) } }
    }

    func appendByte(_ b: UInt8) {
        reserve(1)
        base[writeIndex] = b
        writeIndex += 1
    }

    func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

    func read(_ n: Int) -> [UInt8] {
        let out = [UInt8](UnsafeBufferPointer(start: readPointer, count: n))
        consume(n)
        return out
    }

    func clear() { readIndex = 0; writeIndex = 0 }

    /// Release memory held by a large, now empty buffer.
    func shrinkIfIdle(to cap: Int) {
        guard isEmpty, capacity > cap * 4 else { return }
        base.deallocate()
        capacity = cap
        base = .allocate(capacity: cap)
        readIndex = 0
        writeIndex = 0
    }
}

/// A plain pthread mutex usable from synchronous sections of async code.
final class PLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inline(__always) func lock() { pthread_mutex_lock(m) }
    @inline(__always) func unlock() { pthread_mutex_unlock(m) }
}
