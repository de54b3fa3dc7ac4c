import Foundation

/// Reading and writing files that hold secrets: created 0600, refused when group/world-readable.
public enum SecureFile {
    /// Read a secret file, refusing it (like ssh) when its mode lets group or others read it.
    public static func read(_ path: String, what: String = "key file") throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw P2POSError("FILE_MISSING", "\(what) \(path): \(String(cString: strerror(errno)))",
                             hint: "check the path")
        }
        if st.st_mode & 0o077 != 0 {
            throw P2POSError("KEY_PERMISSIONS",
                             "\(what) \(path) is accessible by group or others (mode \(String(st.st_mode & 0o777, radix: 8)))",
                             hint: "run: chmod 600 \(path)")
        }
        guard st.st_size <= 1 << 20 else { throw P2POSError("FILE_TOO_LARGE", "\(what) \(path) is larger than 1 MiB") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw P2POSError("FILE_UNREADABLE", "\(what) \(path) cannot be read", hint: "check its owner and permissions")
        }
        guard let s = String(data: data, encoding: .utf8) else { throw P2POSError("FILE_INVALID", "\(what) \(path) is not UTF-8 text") }
        return s
    }

    /// Write atomically with mode 0600 (temp file + fsync + rename). Refuses to replace unless `overwrite`.
    public static func write(_ path: String, _ contents: String, overwrite: Bool, mode: mode_t = 0o600) throws {
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw P2POSError("FILE_EXISTS", "\(path) already exists", hint: "pass --force to replace it")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw P2POSError("FILE_WRITE", "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        fchmod(fd, mode)
        let bytes = Array(contents.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = String(cString: strerror(errno))
                close(fd); unlink(tmp)
                throw P2POSError("FILE_WRITE", "cannot write \(path): \(e)")
            }
            off += n
        }
        if fsync(fd) != 0 {
            let e = String(cString: strerror(errno))
            close(fd); unlink(tmp)
            throw P2POSError("FILE_WRITE", "cannot sync \(path): \(e)")
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw P2POSError("FILE_WRITE", "cannot rename into \(path): \(e)")
        }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// Create a directory (and parents) with the given mode if missing.
    public static func makeDirectory(_ path: String, mode: Int = 0o700) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw P2POSError("NOT_A_DIRECTORY", "\(path) exists and is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: mode])
        } catch {
            throw P2POSError("MKDIR", "cannot create directory \(path): \(error.localizedDescription)",
                             hint: "choose another --data-dir or fix permissions")
        }
    }
}
