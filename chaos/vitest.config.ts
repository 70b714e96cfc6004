import { defineProject, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

/**
 * The bounded fault suite (`npm run chaos` runs the full one): its own private RabbitMQ node (it kills and restarts
 * it) and its own `warren pb serve` processes, built by `tsc -b` before the tests run.
 */
export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "chaos",
      testTimeout: 120_000,
      hookTimeout: 180_000
    }
  })
)
