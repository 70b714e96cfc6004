/** Choosing the store's backend from `WARREN_KV_URL` or a `--store` value. */
import { assert, describe, it } from "@effect/vitest"
import { KvStore, StoreConfig } from "@warren/kv"
import { ConfigProvider, Context, Effect, Layer, Option, Redacted } from "effect"
import { freshDatabase } from "./support/postgres.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("StoreConfig", () => {
  it.effect("no WARREN_KV_URL selects the embedded store, with its own options", () =>
    Effect.gen(function*() {
      const choice = yield* StoreConfig.config.pipe(withEnv({ WARREN_KV_MAX_BYTES: "1000" }))
      assert.strictEqual(choice._tag, "Embedded")
      if (choice._tag === "Embedded") assert.strictEqual(choice.options.maxBytes, 1000)
      assert.strictEqual((yield* StoreConfig.fromUrl("embedded").pipe(withEnv({})))._tag, "Embedded")
    }))

  it.effect("a postgres:// URL selects PostgreSQL, with pool options from the environment", () =>
    Effect.gen(function*() {
      const choice = yield* StoreConfig.config.pipe(withEnv({
        WARREN_KV_URL: "postgres://u:secret@db:5432/kv",
        WARREN_KV_PG_MAX_CONNECTIONS: "4",
        WARREN_KV_PG_REQUEST_TIMEOUT: "3 seconds"
      }))
      assert.strictEqual(choice._tag, "Postgres")
      if (choice._tag === "Postgres") {
        assert.strictEqual(choice.options.maxConnections, 4)
        assert.isTrue(Redacted.isRedacted(choice.options.url))
        assert.notInclude(String(choice.options.url), "secret")
      }
      const flag = yield* StoreConfig.fromUrl("postgresql://db/kv").pipe(withEnv({}))
      assert.strictEqual(flag._tag, "Postgres")
    }))

  it.effect("anything else is a ConfigError that names the source and hides a password", () =>
    Effect.gen(function*() {
      const failed = yield* Effect.flip(StoreConfig.config.pipe(withEnv({ WARREN_KV_URL: "mysql://u:secret@db/kv" })))
      assert.include(String(failed), "WARREN_KV_URL")
      assert.notInclude(String(failed), "secret")
      const flag = yield* Effect.flip(StoreConfig.fromUrl("redis://db").pipe(withEnv({})))
      assert.include(String(flag), "--store")
    }))

  it.scopedLive("layerConfig builds a working store on the PostgreSQL the URL names", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const context = yield* Layer.build(StoreConfig.layerConfig().pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["WARREN_KV_URL", url]]))))
      ))
      const store = Context.get(context, KvStore.KvStore)
      const enc = (s: string) => new TextEncoder().encode(s)
      yield* store.put({ bucket: enc("b") }, enc("k"), { value: enc("v") })
      assert.isTrue(Option.isSome(yield* store.get({ bucket: enc("b"), key: enc("k") })))
    }))
})
