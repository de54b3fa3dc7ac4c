import CSodium
import Foundation

/// Ed25519 signature verification for transactions, one at a time or many at once.
///
/// Why not libsodium's `crypto_sign_verify_detached`: a batch of n signatures can be checked with
/// one multi-scalar multiplication, several times cheaper per signature than n separate checks,
/// and a node verifies every tx. libsodium has no batch API and does not expose its curve
/// arithmetic, so the field and group code is here (SHA-512 and scalar arithmetic mod L still
/// come from libsodium).
///
/// Acceptance rule (the same for one signature and for a batch, so the answer never depends on
/// which other signatures shared a batch — apply must be deterministic on every node):
/// - S is canonical (S < L);
/// - A and R are canonical encodings (y < p, no "negative zero" x) of curve points, and neither
///   has small order;
/// - the cofactored equation [8]([S]B − [h]A − R) = O holds, h = SHA-512(R ‖ A ‖ M) mod L
///   (RFC 8032 §5.1.7 allows the cofactored check).
/// Everything libsodium accepts is accepted here. The only signatures accepted here and refused
/// by libsodium are ones whose [S]B − [h]A − R is a non-zero point of small order, which only
/// the key's owner can produce, on purpose, with a key that has a torsion component.
///
/// Batches use coefficients z_i derived by SHA-512 from the whole batch (no randomness), so the
/// check is a pure function of its input: a batch with an invalid member passes only if an
/// attacker finds a 128-bit hash coincidence. A failing batch is split until the bad signatures
/// are found.
public enum Ed25519 {
    /// One signature to check. `publicKey` is 32 bytes, `signature` 64.
    public struct Item: Sendable {
        public let publicKey: [UInt8]
        public let signature: [UInt8]
        public let message: [UInt8]
        public init(publicKey: [UInt8], signature: [UInt8], message: [UInt8]) {
            self.publicKey = publicKey
            self.signature = signature
            self.message = message
        }
    }

    /// Check one signature.
    public static func verify(publicKey: [UInt8], signature: [UInt8], message: [UInt8]) -> Bool {
        guard let p = Prepared(Item(publicKey: publicKey, signature: signature, message: message)) else { return false }
        return equationHolds([p], coefficients: false)
    }

    /// Check many signatures; the result has one answer per item, in order, each exactly what
    /// `verify` would answer for that item alone.
    public static func verify(batch items: [Item]) -> [Bool] {
        var ok = [Bool](repeating: false, count: items.count)
        var prepared: [Prepared] = []
        var where_: [Int] = []
        prepared.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            if let p = Prepared(item) { prepared.append(p); where_.append(i) }
        }
        check(prepared[...], where_[...], into: &ok)
        return ok
    }

    /// Batch check with bisection: a passing group is all good; a failing one is split.
    private static func check(_ ps: ArraySlice<Prepared>, _ idx: ArraySlice<Int>, into ok: inout [Bool]) {
        if ps.isEmpty { return }
        if ps.count == 1 {
            ok[idx.first!] = equationHolds([ps.first!], coefficients: false)
            return
        }
        if equationHolds(Array(ps), coefficients: true) {
            for i in idx { ok[i] = true }
            return
        }
        // A small failing group: checking each costs less than splitting further.
        if ps.count <= 4 {
            for (p, i) in zip(ps, idx) { ok[i] = equationHolds([p], coefficients: false) }
            return
        }
        let mid = ps.startIndex + ps.count / 2
        let imid = idx.startIndex + idx.count / 2
        check(ps[ps.startIndex..<mid], idx[idx.startIndex..<imid], into: &ok)
        check(ps[mid...], idx[imid...], into: &ok)
    }

    // MARK: Per-signature preparation

    /// A signature whose encodings passed every check but the equation.
    struct Prepared {
        let negA: KeyTables    // odd multiples of −A and of −2^128·A
        let negR: P3           // −R
        let s: [UInt8]         // S, canonical
        let h: [UInt8]         // SHA-512(R ‖ A ‖ M) mod L
        let rBytes: [UInt8]
        let aBytes: [UInt8]

        init?(_ item: Item) {
            guard item.publicKey.count == 32, item.signature.count == 64 else { return nil }
            let rb = Array(item.signature[0..<32])
            let sb = Array(item.signature[32..<64])
            guard Scalar.isCanonical(sb) else { return nil }
            guard let r = P3.decode(rb), !r.hasSmallOrder else { return nil }
            guard let na = KeyCache.shared.negatedTable(item.publicKey) else { return nil }
            negA = na
            negR = r.negated
            s = sb
            rBytes = rb
            aBytes = item.publicKey
            h = Scalar.hashReduce(rb, item.publicKey, item.message)
        }
    }

    /// Is [8]( Σ z_i ([S_i]B − [h_i]A_i − R_i) ) the identity? With `coefficients` false (one
    /// signature) z = 1. Every 253-bit scalar k is split as k_lo + 2^128·k_hi and multiplies
    /// tables of P and 2^128·P, so the multi-scalar multiplication needs 128 doublings, not 253.
    static func equationHolds(_ ps: [Prepared], coefficients: Bool) -> Bool {
        var terms = Straus.Terms(capacity: 4 + 3 * ps.count)
        if !coefficients {
            let p = ps[0]
            terms.addSplit(p.s, BaseTable.low, BaseTable.high, width: 8)
            terms.addSplit(p.h, p.negA.low, p.negA.high, width: KeyTables.width)
            // z = 1 for R: add −R once at the end instead of through a table.
            return withExtendedLifetime(p.negA) { terms.run() }.add(p.negR.cached).doubled(times: 3).isIdentity
        }
        let zs = Scalar.coefficients(ps)
        var bScalar = [UInt8](repeating: 0, count: 32)
        // Same key, same tables: sum its scalars (txs in a batch often share a signer).
        var keyScalars: [[UInt8]] = []
        var keyTables: [KeyTables] = []
        // By the tables' identity (one object per cached key; a key whose tables were rebuilt
        // meanwhile is merely not merged): hashing one word instead of 32 bytes.
        var byKey: [ObjectIdentifier: Int] = [:]
        for (i, p) in ps.enumerated() {
            bScalar = Scalar.add(bScalar, Scalar.mul(zs[i], p.s))
            let zh = Scalar.mul(zs[i], p.h)
            let id = ObjectIdentifier(p.negA)
            if let k = byKey[id] {
                keyScalars[k] = Scalar.add(keyScalars[k], zh)
            } else {
                byKey[id] = keyScalars.count
                keyScalars.append(zh)
                keyTables.append(p.negA)
            }
        }
        terms.addSplit(bScalar, BaseTable.low, BaseTable.high, width: 8)
        for (k, t) in zip(keyScalars, keyTables) { terms.addSplit(k, t.low, t.high, width: KeyTables.width) }
        for (i, p) in ps.enumerated() { terms.add(zs[i], Cached8(p.negR)) }   // z_i < 2^128
        // The key tables' memory belongs to `keyTables` (and `ps`): alive until the sum is done.
        return withExtendedLifetime(keyTables) { terms.run() }.doubled(times: 3).isIdentity
    }

    // MARK: Decoded-key cache

    /// Decoded public keys (as tables of odd multiples of −A), so a signer seen before costs no
    /// square root or table build. Bounded; cleared when full.
    final class KeyCache: @unchecked Sendable {
        static let shared = KeyCache()
        static let capacity = 1024
        private let lock = NSLock()
        private var tables: [[UInt8]: KeyTables] = [:]
        private var refused = Set<[UInt8]>()

        func negatedTable(_ key: [UInt8]) -> KeyTables? {
            let (hit, bad) = lock.withLock { (tables[key], refused.contains(key)) }
            if let hit { return hit }
            if bad { return nil }
            let t: KeyTables?
            if let a = P3.decode(key), !a.hasSmallOrder { t = KeyTables(a.negated) } else { t = nil }
            lock.withLock {
                if tables.count + refused.count >= KeyCache.capacity { tables.removeAll(); refused.removeAll() }
                if let t { tables[key] = t } else { refused.insert(key) }
            }
            return t
        }
    }
}

// MARK: - Scalars mod L (libsodium) and NAF

enum Scalar {
    /// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    static let order: [UInt8] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ]

    /// s < L (compared as little-endian integers).
    static func isCanonical(_ s: [UInt8]) -> Bool {
        for i in stride(from: 31, through: 0, by: -1) {
            if s[i] < order[i] { return true }
            if s[i] > order[i] { return false }
        }
        return false
    }

    static func hashReduce(_ r: [UInt8], _ a: [UInt8], _ m: [UInt8]) -> [UInt8] {
        var st = crypto_hash_sha512_state()
        crypto_hash_sha512_init(&st)
        crypto_hash_sha512_update(&st, r, 32)
        crypto_hash_sha512_update(&st, a, 32)
        m.withUnsafeBufferPointer { _ = crypto_hash_sha512_update(&st, $0.baseAddress, UInt64($0.count)) }
        var h = [UInt8](repeating: 0, count: 64)
        crypto_hash_sha512_final(&st, &h)
        var out = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_reduce(&out, h)
        return out
    }

    static func mul(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_mul(&out, a, b)
        return out
    }

    static func add(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_add(&out, a, b)
        return out
    }

    /// 128-bit coefficients from SHA-512 over every (R, A, S, h) of the batch, then one hash per
    /// index: deterministic, and unpredictable to whoever chose the signatures.
    static func coefficients(_ ps: [Ed25519.Prepared]) -> [[UInt8]] {
        var st = crypto_hash_sha512_state()
        crypto_hash_sha512_init(&st)
        let tag = Array("p2pos ed25519 batch v1".utf8)
        crypto_hash_sha512_update(&st, tag, UInt64(tag.count))
        for p in ps {
            crypto_hash_sha512_update(&st, p.rBytes, 32)
            crypto_hash_sha512_update(&st, p.aBytes, 32)
            crypto_hash_sha512_update(&st, p.s, 32)
            crypto_hash_sha512_update(&st, p.h, 32)
        }
        var seed = [UInt8](repeating: 0, count: 64)
        crypto_hash_sha512_final(&st, &seed)
        var out: [[UInt8]] = []
        out.reserveCapacity(ps.count)
        var buf = seed + [0, 0, 0, 0]
        var h = [UInt8](repeating: 0, count: 64)
        for i in 0..<ps.count {
            buf[64] = UInt8(truncatingIfNeeded: i)
            buf[65] = UInt8(truncatingIfNeeded: i >> 8)
            buf[66] = UInt8(truncatingIfNeeded: i >> 16)
            buf[67] = UInt8(truncatingIfNeeded: i >> 24)
            crypto_hash_sha512(&h, buf, UInt64(buf.count))
            var z = [UInt8](repeating: 0, count: 32)
            for j in 0..<16 { z[j] = h[j] }
            z[0] |= 1   // never zero
            out.append(z)
        }
        return out
    }

    /// Width-w non-adjacent form of a scalar below 2^128 (the low 16 of its 32 little-endian
    /// bytes; the rest must be zero): digits in `slots` (≥ 130) slots, each zero or odd with
    /// |d| ≤ 2^(w−1) − 1.
    static func naf(_ s: [UInt8], width w: Int, slots: Int = 130, into r: UnsafeMutablePointer<Int8>) {
        r.initialize(repeating: 0, count: slots)
        var k: UInt128 = 0
        for i in stride(from: 15, through: 0, by: -1) { k = (k << 8) | UInt128(s[i]) }
        let mask = UInt128((1 << w) - 1)
        let half = 1 << (w - 1)
        var i = 0
        // The value is k plus, after an addition that overflowed, 2^128; every step divides it
        // by a power of two, so that bit moves back into k at once.
        while k != 0 {
            // A run of zero digits in one step.
            let zeros = k.trailingZeroBitCount
            if zeros > 0 {
                k >>= zeros
                i += zeros
            }
            var d = Int(truncatingIfNeeded: k & mask)
            var overflow = false
            if d >= half {
                d -= 1 << w
                (k, overflow) = k.addingReportingOverflow(UInt128(-d))
            } else {
                k -= UInt128(d)
            }
            assert(i < slots)
            r[i] = Int8(d)
            // Now the value is divisible by 2^w: the next w − 1 digits are zero.
            k = (k >> w) | (overflow ? UInt128(1) << (128 - w) : 0)
            i += w
        }
    }
}

// MARK: - Multi-scalar multiplication (Straus, shared doublings)

/// Tables of −A and −2^128·A for a public key A (built with P = −A):
/// odd multiples P, 3P, …, 63P of a cached key's point and of 2^128 times it, for width-7
/// digits: a 128-bit half scalar then costs ~16 additions instead of ~21 at width 5 (about a
/// tenth of a batch verification). Affine (Z = 1), so each addition saves a multiplication;
/// 7.5 KiB per key (`KeyCache` keeps at most 1,024 keys).
final class KeyTables: @unchecked Sendable {
    static let width = 7
    static let entries = 1 << (width - 2)
    let low: UnsafePointer<Affine>
    let high: UnsafePointer<Affine>

    init(_ p: P3) {
        let buf = UnsafeMutablePointer<Affine>.allocate(capacity: 2 * KeyTables.entries)
        let points = P3.oddMultiples(p, count: KeyTables.entries) + P3.oddMultiples(p.doubled(times: 128), count: KeyTables.entries)
        buf.initialize(from: Affine.normalized(points), count: points.count)
        low = UnsafePointer(buf)
        high = UnsafePointer(buf + KeyTables.entries)
    }

    deinit { UnsafeMutablePointer(mutating: low).deallocate() }
}

enum Straus {
    /// Scalars below 2^128 with the odd multiples of their points, evaluated with shared
    /// doublings (at most 129, the length of a 128-bit NAF).
    struct Terms {
        /// Terms whose tables are affine and kept elsewhere (the base point's, cached keys').
        private var wideScalars: [[UInt8]] = []
        private var wideWidths: [Int] = []
        private var wideTables: [UnsafePointer<Affine>] = []
        /// Width-5 terms with their eight entries (each R).
        private var smallScalars: [[UInt8]] = []
        private var small: [Cached8] = []

        init(capacity: Int) {
            wideScalars.reserveCapacity(capacity)
            wideWidths.reserveCapacity(capacity)
            wideTables.reserveCapacity(capacity)
            smallScalars.reserveCapacity(capacity)
            small.reserveCapacity(capacity)
        }

        /// k (< 2^128, 32 little-endian bytes) times the point of `table`.
        mutating func add(_ k: [UInt8], _ table: Cached8) {
            smallScalars.append(k)
            small.append(table)
        }

        /// k (< 2^253, 32 little-endian bytes) as lo + 2^128·hi, each half as 32 little-endian bytes.
        private static func halves(_ k: [UInt8]) -> (lo: [UInt8], hi: [UInt8]) {
            let zeros = [UInt8](repeating: 0, count: 16)
            return (Array(k[0..<16]) + zeros, Array(k[16..<32]) + zeros)
        }

        /// k (< 2^253) = lo + 2^128·hi times P, given tables of odd multiples of P and 2^128·P
        /// for digits of `width` (width 8: the base point's static tables; 7: a cached key's).
        mutating func addSplit(_ k: [UInt8], _ low: UnsafePointer<Affine>, _ high: UnsafePointer<Affine>, width: Int) {
            let (lo, hi) = Terms.halves(k)
            wideScalars += [lo, hi]
            wideWidths += [width, width]
            wideTables += [low, high]
        }

        func run() -> P3 {
            let nw = wideScalars.count, ns = smallScalars.count, n = nw + ns
            let digits = 130
            let nafs = UnsafeMutablePointer<Int8>.allocate(capacity: max(1, n) * 256)
            defer { nafs.deallocate() }
            // Every small term's entries in one buffer, so a lookup copies one entry.
            let flat = UnsafeMutablePointer<Cached>.allocate(capacity: max(1, ns * 8))
            defer { flat.deallocate() }
            for j in 0..<ns {
                small[j].withEntries { e in (flat + j * 8).initialize(from: e.baseAddress!, count: 8) }
            }
            for j in 0..<nw { Scalar.naf(wideScalars[j], width: wideWidths[j], slots: digits, into: nafs + j * 256) }
            for j in 0..<ns { Scalar.naf(smallScalars[j], width: 5, slots: digits, into: nafs + (nw + j) * 256) }
            var top = digits - 1
            outer: while top >= 0 {
                for j in 0..<n where nafs[j * 256 + top] != 0 { break outer }
                top -= 1
            }
            var q = P3.identity
            var i = top
            let wide = wideTables
            while i >= 0 {
                q = q.double()
                var naf = nafs + i
                for j in 0..<nw {
                    let d = naf.pointee
                    if d > 0 { q = q.add(wide[j][Int(d) >> 1]) } else if d < 0 { q = q.sub(wide[j][Int(-d) >> 1]) }
                    naf += 256
                }
                var entries = UnsafePointer(flat)
                for _ in 0..<ns {
                    let d = naf.pointee
                    if d > 0 { q = q.add(entries[Int(d) >> 1]) } else if d < 0 { q = q.sub(entries[Int(-d) >> 1]) }
                    naf += 256
                    entries += 8
                }
                i -= 1
            }
            return q
        }
    }
}

/// Odd multiples B, 3B, …, 127B and the same of 2^128·B (for width-8 digits), affine, built once.
enum BaseTable {
    nonisolated(unsafe) static let low: UnsafePointer<Affine> = build(P3.base)
    nonisolated(unsafe) static let high: UnsafePointer<Affine> = build(P3.base.doubled(times: 128))

    private static func build(_ b: P3) -> UnsafePointer<Affine> {
        let out = UnsafeMutablePointer<Affine>.allocate(capacity: 64)   // lives as long as the process
        out.initialize(from: Affine.normalized(P3.oddMultiples(b, count: 64)), count: 64)
        return UnsafePointer(out)
    }
}

/// Odd multiples P, 3P, …, 15P (width-5 digits).
struct Cached8 {
    let m0, m1, m2, m3, m4, m5, m6, m7: Cached

    init(_ p: P3) {
        let p2 = p.double().cached
        var c = p
        m0 = c.cached; c = c.add(p2)
        m1 = c.cached; c = c.add(p2)
        m2 = c.cached; c = c.add(p2)
        m3 = c.cached; c = c.add(p2)
        m4 = c.cached; c = c.add(p2)
        m5 = c.cached; c = c.add(p2)
        m6 = c.cached; c = c.add(p2)
        m7 = c.cached
    }

    /// The eight entries as a buffer (P, 3P, …, 15P).
    func withEntries<R>(_ body: (UnsafeBufferPointer<Cached>) -> R) -> R {
        withUnsafeBytes(of: self) { raw in
            body(raw.bindMemory(to: Cached.self))
        }
    }
}

// MARK: - Points: extended coordinates on −x² + y² = 1 + d·x²·y²

struct Cached {
    let yPlusX, yMinusX, z2, t2d: FE
}

/// A point with Z = 1 for mixed addition: y + x, y − x and 2d·x·y.
struct Affine {
    let yPlusX, yMinusX, xy2d: FE

    /// The points with Z = 1, with one inversion for all of them (Montgomery's trick).
    static func normalized(_ ps: [P3]) -> [Affine] {
        guard !ps.isEmpty else { return [] }
        var prefix: [FE] = []          // prefix[i] = z_0 · … · z_(i−1)
        prefix.reserveCapacity(ps.count)
        var acc = FE.one
        for p in ps {
            prefix.append(acc)
            acc = acc * p.z
        }
        var inv = acc.inverted            // 1 / (z_0 · … · z_(n−1))
        var out = [Affine](repeating: Affine(yPlusX: .zero, yMinusX: .zero, xy2d: .zero), count: ps.count)
        for i in stride(from: ps.count - 1, through: 0, by: -1) {
            let zi = inv * prefix[i]      // 1 / z_i
            inv = inv * ps[i].z
            let x = ps[i].x * zi, y = ps[i].y * zi
            out[i] = Affine(yPlusX: (y + x).carried, yMinusX: (y - x).carried, xy2d: (x * y) * FE.d2)
        }
        return out
    }
}

struct P3 {
    var x, y, z, t: FE

    static let identity = P3(x: .zero, y: .one, z: .one, t: .zero)
    static let base = P3(
        x: FE(0x62d608f25d51a, 0x412a4b4f6592a, 0x75b7171a4b31d, 0x1ff60527118fe, 0x216936d3cd6e5),
        y: FE(0x6666666666658, 0x4cccccccccccc, 0x1999999999999, 0x3333333333333, 0x6666666666666),
        z: .one,
        t: FE(0x68ab3a5b7dda3, 0xeea2a5eadbb, 0x2af8df483c27e, 0x332b375274732, 0x67875f0fd78b7))

    @inline(__always) var cached: Cached {
        Cached(yPlusX: (y + x).carried, yMinusX: (y - x).carried, z2: (z + z).carried, t2d: t * FE.d2)
    }

    var negated: P3 { P3(x: (FE.zero - x).carried, y: y, z: z, t: (FE.zero - t).carried) }

    /// self + q (8 multiplications).
    @inline(__always) func add(_ q: Cached) -> P3 {
        P3.sum((y - x) * q.yMinusX, (y + x) * q.yPlusX, c: t * q.t2d, d: z * q.z2, subtract: false)
    }

    /// self − q.
    @inline(__always) func sub(_ q: Cached) -> P3 {
        P3.sum((y - x) * q.yPlusX, (y + x) * q.yMinusX, c: t * q.t2d, d: z * q.z2, subtract: true)
    }

    /// self + q for q with Z = 1 (7 multiplications: 2Z replaces Z·Z_q).
    @inline(__always) func add(_ q: Affine) -> P3 {
        P3.sum((y - x) * q.yMinusX, (y + x) * q.yPlusX, c: t * q.xy2d, d: z + z, subtract: false)
    }

    /// self − q for q with Z = 1.
    @inline(__always) func sub(_ q: Affine) -> P3 {
        P3.sum((y - x) * q.yPlusX, (y + x) * q.yMinusX, c: t * q.xy2d, d: z + z, subtract: true)
    }

    /// The sum from the four products every addition above starts with (for a subtraction the
    /// caller has swapped q's y ± x, and c changes sign).
    @inline(__always) private static func sum(_ a: FE, _ b: FE, c: FE, d: FE, subtract: Bool) -> P3 {
        let e = b - a, h = b + a
        let f = subtract ? d + c : d - c, g = subtract ? d - c : d + c
        return P3(x: e * f, y: g * h, z: f * g, t: e * h)
    }

    /// P, 3P, 5P, … (`count` of them).
    static func oddMultiples(_ p: P3, count: Int) -> [P3] {
        let p2 = p.double().cached
        var out = [p]
        out.reserveCapacity(count)
        var cur = p
        for _ in 1..<count {
            cur = cur.add(p2)
            out.append(cur)
        }
        return out
    }

    /// 2·self (4 squarings, 4 multiplications).
    @inline(__always) func double() -> P3 {
        let a = x.squared
        let b = y.squared
        let c = z.squared + z.squared
        let ab = a + b
        let e = (x + y).squared - ab
        let g = b - a
        let f = (g - c).carried
        let h = FE.zero - ab
        return P3(x: e * f, y: g * h, z: f * g, t: e * h)
    }

    /// [2^n]·self.
    func doubled(times n: Int) -> P3 {
        var q = self
        for _ in 0..<n { q = q.double() }
        return q
    }

    var isIdentity: Bool { x.isZero && (y - z).isZero }

    /// [8]P = O.
    var hasSmallOrder: Bool { doubled(times: 3).isIdentity }

    /// RFC 8032 §5.1.3 decoding, refusing non-canonical encodings (y ≥ p, or x = 0 with the sign
    /// bit set).
    static func decode(_ s: [UInt8]) -> P3? {
        guard s.count == 32 else { return nil }
        let y = FE(bytes: s)
        guard y.bytes == s.prefixMasked else { return nil }   // y < p
        let sign = s[31] >> 7
        let yy = y.squared
        let u = (yy - .one).carried
        let v = (yy * FE.d + .one).carried
        let v3 = v.squared * v
        let v7 = v3.squared * v
        var x = u * v3 * (u * v7).pow22523
        let vxx = v * x.squared
        if !(vxx - u).isZero {
            guard (vxx + u).isZero else { return nil }
            x = x * FE.sqrtm1
        }
        let xb = x.bytes
        if xb.allSatisfy({ $0 == 0 }) && sign == 1 { return nil }
        if (xb[0] & 1) != sign { x = (FE.zero - x).carried }
        return P3(x: x, y: y, z: .one, t: x * y)
    }

    /// Canonical encoding (for tests; needs an inversion).
    var encoded: [UInt8] {
        let zi = z.inverted
        let xa = (x * zi).bytes
        var ya = (y * zi).bytes
        ya[31] |= (xa[0] & 1) << 7
        return ya
    }
}

private extension Array where Element == UInt8 {
    /// The 32 bytes with the top (sign) bit cleared.
    var prefixMasked: [UInt8] {
        var c = self
        c[31] &= 0x7f
        return c
    }
}

// MARK: - Field arithmetic mod p = 2^255 − 19, five 51-bit limbs

/// Limbs are kept below 2^54 between operations: products come out below 2^51 + 2^13, sums of
/// two products below 2^53, differences (biased by 4p) below 2^54.
struct FE {
    var v0, v1, v2, v3, v4: UInt64

    @inline(__always) init(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64, _ e: UInt64) {
        v0 = a; v1 = b; v2 = c; v3 = d; v4 = e
    }

    static let mask: UInt64 = (1 << 51) - 1
    static let zero = FE(0, 0, 0, 0, 0)
    static let one = FE(1, 0, 0, 0, 0)
    static let d = FE(0x34dca135978a3, 0x1a8283b156ebd, 0x5e7a26001c029, 0x739c663a03cbb, 0x52036cee2b6ff)
    static let d2 = FE(0x69b9426b2f159, 0x35050762add7a, 0x3cf44c0038052, 0x6738cc7407977, 0x2406d9dc56dff)
    static let sqrtm1 = FE(0x61b274a0ea0b0, 0xd5a5fc8f189d, 0x7ef5e9cbd0c60, 0x78595a6804c9e, 0x2b8324804fc1d)

    /// Little-endian 32 bytes; bit 255 is ignored.
    init(bytes s: [UInt8]) {
        func w(_ o: Int) -> UInt64 {
            var r: UInt64 = 0
            for i in 0..<8 { r |= UInt64(s[o + i]) << (8 * UInt64(i)) }
            return r
        }
        let w0 = w(0), w1 = w(8), w2 = w(16), w3 = w(24)
        v0 = w0 & FE.mask
        v1 = ((w0 >> 51) | (w1 << 13)) & FE.mask
        v2 = ((w1 >> 38) | (w2 << 26)) & FE.mask
        v3 = ((w2 >> 25) | (w3 << 39)) & FE.mask
        v4 = (w3 >> 12) & FE.mask
    }

    @inline(__always) static func + (a: FE, b: FE) -> FE {
        FE(a.v0 &+ b.v0, a.v1 &+ b.v1, a.v2 &+ b.v2, a.v3 &+ b.v3, a.v4 &+ b.v4)
    }

    /// a − b + 4p (b's limbs must be below 2^53 − 76).
    @inline(__always) static func - (a: FE, b: FE) -> FE {
        FE(a.v0 &+ 0x1fffffffffffb4 &- b.v0, a.v1 &+ 0x1ffffffffffffc &- b.v1, a.v2 &+ 0x1ffffffffffffc &- b.v2,
           a.v3 &+ 0x1ffffffffffffc &- b.v3, a.v4 &+ 0x1ffffffffffffc &- b.v4)
    }

    /// One carry pass: limbs below 2^51 + 2^13.
    @inline(__always) var carried: FE {
        var a = self
        a.v1 &+= a.v0 >> 51; a.v0 &= FE.mask
        a.v2 &+= a.v1 >> 51; a.v1 &= FE.mask
        a.v3 &+= a.v2 >> 51; a.v2 &= FE.mask
        a.v4 &+= a.v3 >> 51; a.v3 &= FE.mask
        a.v0 &+= (a.v4 >> 51) &* 19; a.v4 &= FE.mask
        a.v1 &+= a.v0 >> 51; a.v0 &= FE.mask
        return a
    }

    @inline(__always) static func m(_ a: UInt64, _ b: UInt64) -> UInt128 { UInt128(a) &* UInt128(b) }

    @inline(__always) static func reduce(_ r0: UInt128, _ r1: UInt128, _ r2: UInt128, _ r3: UInt128, _ r4: UInt128) -> FE {
        var r1 = r1, r2 = r2, r3 = r3, r4 = r4
        r1 &+= r0 >> 51; let h0 = UInt64(truncatingIfNeeded: r0) & mask
        r2 &+= r1 >> 51; let h1 = UInt64(truncatingIfNeeded: r1) & mask
        r3 &+= r2 >> 51; let h2 = UInt64(truncatingIfNeeded: r2) & mask
        r4 &+= r3 >> 51; let h3 = UInt64(truncatingIfNeeded: r3) & mask
        let c = UInt64(truncatingIfNeeded: r4 >> 51); let h4 = UInt64(truncatingIfNeeded: r4) & mask
        let t0 = h0 &+ c &* 19
        return FE(t0 & mask, h1 &+ (t0 >> 51), h2, h3, h4)
    }

    @inline(__always) static func * (f: FE, g: FE) -> FE {
        let g1 = g.v1 &* 19, g2 = g.v2 &* 19, g3 = g.v3 &* 19, g4 = g.v4 &* 19
        let r0 = m(f.v0, g.v0) &+ m(f.v1, g4) &+ m(f.v2, g3) &+ m(f.v3, g2) &+ m(f.v4, g1)
        let r1 = m(f.v0, g.v1) &+ m(f.v1, g.v0) &+ m(f.v2, g4) &+ m(f.v3, g3) &+ m(f.v4, g2)
        let r2 = m(f.v0, g.v2) &+ m(f.v1, g.v1) &+ m(f.v2, g.v0) &+ m(f.v3, g4) &+ m(f.v4, g3)
        let r3 = m(f.v0, g.v3) &+ m(f.v1, g.v2) &+ m(f.v2, g.v1) &+ m(f.v3, g.v0) &+ m(f.v4, g4)
        let r4 = m(f.v0, g.v4) &+ m(f.v1, g.v3) &+ m(f.v2, g.v2) &+ m(f.v3, g.v1) &+ m(f.v4, g.v0)
        return reduce(r0, r1, r2, r3, r4)
    }

    @inline(__always) var squared: FE {
        let f0 = v0, f1 = v1, f2 = v2, f3 = v3, f4 = v4
        let f0x2 = f0 &* 2, f1x2 = f1 &* 2
        let f1x38 = f1 &* 38, f2x38 = f2 &* 38, f3x38 = f3 &* 38
        let f3x19 = f3 &* 19, f4x19 = f4 &* 19
        let r0 = FE.m(f0, f0) &+ FE.m(f1x38, f4) &+ FE.m(f2x38, f3)
        let r1 = FE.m(f0x2, f1) &+ FE.m(f2x38, f4) &+ FE.m(f3x19, f3)
        let r2 = FE.m(f0x2, f2) &+ FE.m(f1, f1) &+ FE.m(f3x38, f4)
        let r3 = FE.m(f0x2, f3) &+ FE.m(f1x2, f2) &+ FE.m(f4x19, f4)
        let r4 = FE.m(f0x2, f4) &+ FE.m(f1x2, f3) &+ FE.m(f2, f2)
        return FE.reduce(r0, r1, r2, r3, r4)
    }

    @inline(__always) func squared(times n: Int) -> FE {
        var a = self
        for _ in 0..<n { a = a.squared }
        return a
    }

    /// Canonical little-endian encoding (fully reduced mod p).
    var bytes: [UInt8] {
        let a = carried.carried
        var q = (a.v0 &+ 19) >> 51
        q = (a.v1 &+ q) >> 51
        q = (a.v2 &+ q) >> 51
        q = (a.v3 &+ q) >> 51
        q = (a.v4 &+ q) >> 51
        var h0 = a.v0 &+ 19 &* q, h1 = a.v1, h2 = a.v2, h3 = a.v3, h4 = a.v4
        h1 &+= h0 >> 51; h0 &= FE.mask
        h2 &+= h1 >> 51; h1 &= FE.mask
        h3 &+= h2 >> 51; h2 &= FE.mask
        h4 &+= h3 >> 51; h3 &= FE.mask
        h4 &= FE.mask
        let w = [h0 | (h1 << 51), (h1 >> 13) | (h2 << 38), (h2 >> 26) | (h3 << 25), (h3 >> 39) | (h4 << 12)]
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 { out[i] = UInt8(truncatingIfNeeded: w[i >> 3] >> (8 * UInt64(i & 7))) }
        return out
    }

    var isZero: Bool {
        let b = bytes
        var acc: UInt8 = 0
        for x in b { acc |= x }
        return acc == 0
    }

    /// z^(2^250 − 1) and z^11, the shared prefix of both exponentiations.
    private var chain250: (FE, FE) {
        let z = self
        let z2 = z.squared
        let z9 = z2.squared(times: 2) * z
        let z11 = z9 * z2
        let z5_0 = z11.squared * z9                 // 2^5 − 1
        let z10_0 = z5_0.squared(times: 5) * z5_0
        let z20_0 = z10_0.squared(times: 10) * z10_0
        let z40_0 = z20_0.squared(times: 20) * z20_0
        let z50_0 = z40_0.squared(times: 10) * z10_0
        let z100_0 = z50_0.squared(times: 50) * z50_0
        let z200_0 = z100_0.squared(times: 100) * z100_0
        let z250_0 = z200_0.squared(times: 50) * z50_0
        return (z250_0, z11)
    }

    /// z^((p − 5) / 8) = z^(2^252 − 3).
    var pow22523: FE { chain250.0.squared(times: 2) * self }

    /// z^(p − 2) = z^(2^255 − 21).
    var inverted: FE {
        let (z250, z11) = chain250
        return z250.squared(times: 5) * z11
    }
}
