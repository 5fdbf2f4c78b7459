import ArgumentParser

/// `db …`: the database file itself: backups, restores, checks, status.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Back up, restore, check and inspect the database file.",
        subcommands: [
            DatabaseBackupCommand.self, DatabaseRestoreCommand.self, DatabaseCheckCommand.self, DatabaseStatusCommand.self, DatabaseCopyCommand.self,
        ]
    )
}
