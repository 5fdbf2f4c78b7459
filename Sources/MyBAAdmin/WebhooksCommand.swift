import ArgumentParser
import Foundation
import MyBAOps

/// `webhooks …`: the inbox of Stripe and Clerk deliveries.
struct WebhooksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks",
        abstract: "List, show and replay stored webhook events.",
        subcommands: [
            WebhooksListCommand.self, WebhooksShowCommand.self, WebhooksReplayCommand.self, WebhooksRecoverCommand.self, WebhooksPruneCommand.self,
        ]
    )
}
