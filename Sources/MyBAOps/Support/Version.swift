/// MyBA's version, reported by `/api/health` and `myba-admin --version`.
public let mybaVersion = "0.1.0"
