extension Sequence where Element == UInt8 {
    /// Lowercase hexadecimal, two digits per byte: how digests and signatures are written here.
    /// A table lookup, not `String(format:)`, which costs a formatter per byte on a hot path.
    public var lowercaseHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}
