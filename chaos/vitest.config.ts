import { defineProject, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

/**
 * The bounded fault suite (`npm run chaos` runs the full one): its own private RabbitMQ node (it kills and restarts
 * it) and its own `warren pb serve` processes, built by `tsc -b` before the tests run. It runs after every other
 * project (group 1): its load (a node's start and kill, 2,000 connections, a client that does not read) would
 * otherwise share the 2 cores with timing-sensitive tests of other projects.
 */
export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "chaos",
      sequence: { groupOrder: 1 },
      testTimeout: 120_000,
      hookTimeout: 180_000
    }
  })
)
