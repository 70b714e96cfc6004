/**
 * Which backend a server's `KvStore` runs on: the embedded store (the default, nothing to set up) or
 * PostgreSQL, chosen by a URL (`WARREN_KV_URL`, or `warren pb serve --store`), so several servers can
 * share one store.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Either from "effect/Either"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { StorageError } from "./KvError.js"
import * as KvStore from "./KvStore.js"
import * as PgBackend from "./PgBackend.js"

/**
 * The chosen backend and its options.
 *
 * @since 0.1.0
 * @category models
 */
export type Choice =
  | { readonly _tag: "Embedded"; readonly options: KvStore.Options }
  | { readonly _tag: "Postgres"; readonly options: PgBackend.Options }

/**
 * Why the chosen store could not start.
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError = KvStore.StartError | StorageError

/** Picks the backend named by `store`, with the options read for each. */
const choose = (
  store: string | undefined,
  source: string,
  embedded: KvStore.Options,
  pool: PgBackend.PoolOptions
): Either.Either<Choice, ConfigError.ConfigError> => {
  const value = store?.trim() ?? ""
  if (value === "" || value === "embedded") return Either.right({ _tag: "Embedded", options: embedded })
  if (PgBackend.isUrl(value)) return Either.right({ _tag: "Postgres", options: { ...pool, url: Redacted.make(value) } })
  return Either.left(
    ConfigError.InvalidData([], `${source} must be "embedded" or a postgres:// URL, not ${JSON.stringify(redact(value))}`)
  )
}

/** Hides a password in a URL-looking value before it goes into an error message. */
const redact = (value: string): string => value.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@")

/**
 * The choice for `store`: `undefined`, `""` or `"embedded"` selects the embedded store (options from
 * `KvStore.config`); a `postgres://` or `postgresql://` URL selects PostgreSQL (pool options from
 * `PgBackend.poolConfig`). Anything else is a `ConfigError` naming `source`.
 *
 * @since 0.1.0
 * @category config
 */
export const fromUrl = (store: string | undefined, source = "--store"): Config.Config<Choice> =>
  Config.all({ embedded: KvStore.config, pool: PgBackend.poolConfig }).pipe(
    Config.mapOrFail(({ embedded, pool }) => choose(store, source, embedded, pool))
  )

/**
 * The choice from the environment: `WARREN_KV_URL` (unset: the embedded store), as `fromUrl` reads it.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Choice> = Config.all({
  url: Config.option(Config.string("WARREN_KV_URL")),
  embedded: KvStore.config,
  pool: PgBackend.poolConfig
}).pipe(
  Config.mapOrFail(({ embedded, pool, url }) => choose(Option.getOrUndefined(url), "WARREN_KV_URL", embedded, pool))
)

/**
 * The store over the chosen backend.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (choice: Choice): Layer.Layer<KvStore.KvStore, StartError> =>
  choice._tag === "Embedded"
    ? KvStore.layer(choice.options)
    : KvStore.layerFromBackend.pipe(Layer.provide(PgBackend.layer(choice.options)))

/**
 * The store over the backend chosen by a `Config` (default: `config`, i.e. `WARREN_KV_URL`). For a
 * command-line flag that overrides the variable, pass `fromUrl(flag)` when the flag is given.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  choice: Config.Config<Choice> = config
): Layer.Layer<KvStore.KvStore, StartError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(choice, layer))
