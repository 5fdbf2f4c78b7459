import ArgumentParser
import Foundation
import GRDB
import MyBAOps

/// Benchmarks and test workers that need a process of their own. Not shipped.
@main
struct MyBABench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myba-bench",
        abstract: "MyBA benchmarks and multi-process test workers.",
        subcommands: [LedgerBenchmark.self, ConsumeWorker.self, GenerateLog.self, ReconcileBenchmark.self, WatchdogProbe.self]
    )
}
