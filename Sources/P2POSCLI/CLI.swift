import Foundation

/// Entry point of the p2pos command line.
public enum P2POSCLI {
    public static func main(_ args: [String]) -> Never {
        FileHandle.standardError.write("p2pos: not implemented yet\n".data(using: .utf8)!)
        exit(1)
    }
}
