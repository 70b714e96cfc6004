import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "kv",
      // A private PostgreSQL (or DATABASE_URL) for the PostgreSQL backend's tests.
      globalSetup: ["./test/support/globalSetup.ts"]
    }
  })
)
