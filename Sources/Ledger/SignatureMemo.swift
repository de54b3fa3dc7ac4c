import Foundation
import Identity

/// Remembers (tx_id, signature) pairs whose Ed25519 signature this process already verified, so
/// a tx checked at admission (or pre-verified in parallel when its log entry arrived) is not
/// verified again on the serial apply path. Verification is deterministic over the same bytes,
/// so a hit gives exactly the answer a fresh check would. Bounded: when full it is cleared, and
/// apply falls back to verifying inline.
public final class SignatureMemo: @unchecked Sendable {
    public static let shared = SignatureMemo()
    public static let capacity = 200_000

    private let lock = NSLock()
    private var verified = Set<Key>()
    private var _batches = 0, _batched = 0, _singles = 0

    /// Signature checks so far (for /metrics): batches, the signatures they held, and signatures
    /// checked one at a time. Memo hits are not checks.
    public var counts: (batches: Int, batched: Int, singles: Int) { lock.withLock { (_batches, _batched, _singles) } }

    /// The pair itself (equality compares both in full); hashed by the signature's first eight
    /// bytes only, which is enough to spread the keys: unlike a copy of both into one buffer,
    /// building, hashing and comparing a key allocates nothing.
    struct Key: Hashable {
        let txID: String
        let signature: [UInt8]
        static func == (a: Key, b: Key) -> Bool { a.signature == b.signature && a.txID == b.txID }
        func hash(into h: inout Hasher) {
            var w: UInt64 = 0
            signature.withUnsafeBytes { b in
                for i in 0..<min(8, b.count) { w |= UInt64(b[i]) << (8 * UInt64(i)) }
            }
            h.combine(w)
            h.combine(signature.count)
        }
    }

    static func key(_ tx: Tx) -> Key { Key(txID: tx.txID, signature: tx.signature) }

    /// Verify unless already known good; records success.
    public func verify(_ tx: Tx) throws(TxRejection) {
        let k = SignatureMemo.key(tx)
        let known: Bool = lock.withLock {
            if verified.contains(k) { return true }
            _singles += 1       // counted as a check whether or not it verifies
            return false
        }
        if known { return }
        try tx.verifySignature()
        lock.withLock {
            if verified.count >= SignatureMemo.capacity { verified.removeAll(keepingCapacity: true) }
            verified.insert(k)
        }
    }

    /// Verify, as one batch, the signatures of `txs` not already known good, and record the ones
    /// that verify. Returns how many were checked (the rest were hits). A failing signature is
    /// simply not recorded: whoever needs it later verifies it again and gets the same answer.
    @discardableResult
    public func verifyBatch(_ txs: [Tx]) -> Int {
        let misses = lock.withLock { txs.filter { !verified.contains(SignatureMemo.key($0)) } }
        if misses.isEmpty { return 0 }
        let ok = Ed25519.verify(batch: misses.map {
            Ed25519.Item(publicKey: $0.publicKey.raw, signature: $0.signature, message: $0.signedBytes)
        })
        lock.withLock {
            _batches += 1
            _batched += misses.count
            if verified.count + misses.count >= SignatureMemo.capacity { verified.removeAll(keepingCapacity: true) }
            for (tx, good) in zip(misses, ok) where good { verified.insert(SignatureMemo.key(tx)) }
        }
        return misses.count
    }

    /// Forget a pair once applied (keeps the set small in steady state).
    public func forget(_ tx: Tx) {
        let k = SignatureMemo.key(tx)
        lock.withLock { _ = verified.remove(k) }
    }

    public var count: Int { lock.withLock { verified.count } }
}
