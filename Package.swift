// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "myba",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MyBAOps", targets: ["MyBAOps"]),
        .executable(name: "myba-server", targets: ["MyBAServer"]),
        .executable(name: "myba-admin", targets: ["MyBAAdmin"]),
        .executable(name: "myba-bench", targets: ["MyBABench"]),
        .executable(name: "stripe-emulator", targets: ["StripeEmulatorMain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.0"),
        // Background workers (webhook retries, Stripe mirror) run as services beside the server.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Counters and histograms: MyBAOps records through swift-metrics; the server exports them
        // in Prometheus' text format at /metrics.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The PostgreSQL backend for several servers (issue 20), and its TLS settings.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
    ],
    targets: [
        // Every rule of MyBA: ledger, storage, logging, plans. No HTTP routing, no terminal.
        .target(
            name: "MyBAOps",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                // RSA signature checks of Clerk session tokens (RS256/384/512).
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "CCurl",
            ]
        ),
        // libcurl (libcurl4-openssl-dev) for outbound HTTP: its multi interface on a thread of
        // our own, so no cooperative-pool thread ever blocks on a transfer (issue 25).
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .executableTarget(
            name: "MyBAServer",
            dependencies: [
                "MyBAOps",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // The OpenAPI contract and the web page, compiled into the binary as bytes: a copied
            // executable serves both, and there is no build step for the page.
            resources: [
                .embedInCode("Resources/openapi.json"),
                .embedInCode("Resources/web/index.html"),
                .embedInCode("Resources/web/app.js"),
                .embedInCode("Resources/web/api.js"),
                .embedInCode("Resources/web/auth.js"),
                .embedInCode("Resources/web/ticket.js"),
                .embedInCode("Resources/web/app.css"),
                .embedInCode("Resources/web/icon.svg"),
            ]
        ),
        // GNU readline (libreadline-dev) for the console's line editing, history and completion.
        .systemLibrary(name: "CReadline", path: "Sources/CReadline"),
        .executableTarget(
            name: "MyBAAdmin",
            dependencies: [
                "MyBAOps",
                "CReadline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A Stripe-compatible server for tests, benchmarks and local runs. Independent of MyBAOps
        // on purpose: it checks our client against Stripe's wire format, not against itself.
        .target(
            name: "StripeEmulator",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "StripeEmulatorMain",
            dependencies: [
                "StripeEmulator",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks and the multi-process ledger worker used by tests; never shipped.
        .executableTarget(
            name: "MyBABench",
            dependencies: [
                "MyBAOps",
                "StripeEmulator",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "benchmarks/MyBABench"
        ),
        // Helpers shared by the test targets: temporary directories, locating and running the
        // built executables.
        .target(
            name: "MyBATestSupport",
            dependencies: ["MyBAOps", "CTestSpawn"],
            path: "Tests/MyBATestSupport"
        ),
        // glibc's pipe2 and posix_spawn extensions, which Swift's Glibc module hides.
        .systemLibrary(name: "CTestSpawn", path: "Tests/CTestSpawn"),
        .testTarget(
            name: "MyBAOpsTests",
            dependencies: [
                .product(name: "CryptoExtras", package: "swift-crypto"),
                "MyBAOps",
                "MyBATestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "MyBAServerTests",
            dependencies: [
                "StripeEmulator",
                .product(name: "CryptoExtras", package: "swift-crypto"),
                "MyBAServer",
                "MyBAOps",
                "MyBATestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "MyBAAdminTests",
            dependencies: [
                "StripeEmulator",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                "MyBAOps",
                "MyBATestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
    ]
)
