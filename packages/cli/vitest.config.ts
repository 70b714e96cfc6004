import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "cli",
      // A private RabbitMQ node for `warren rpc call` tests (the amqp package's harness).
      globalSetup: ["../amqp/test/support/globalSetup.ts"]
    }
  })
)
