import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "amqp",
      globalSetup: ["./test/support/globalSetup.ts"],
      // Several test files inject broker-wide faults (stop_app / start_app outages) that would break whatever
      // else is talking to the broker at that moment. One fork for the whole project runs its files one after
      // another (tests inside a file are sequential already); vitest also runs single-fork projects after the
      // parallel files of the other projects of the same group, so other projects' broker tests do not overlap.
      poolOptions: { forks: { singleFork: true } }
    }
  })
)
