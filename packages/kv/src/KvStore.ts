/**
 * The object store behind the KV service: buckets grouped by bucket type, values with their metadata and
 * an opaque causal context (vclock), siblings for concurrent writes in buckets with `allowMult`, bucket
 * properties, conditional puts, bounded memory and an optional snapshot file that survives restarts.
 *
 * The semantics (causal clocks and siblings, conditional puts, generated keys) are implemented once, over a `KvBackend`
 * (`fromBackend` / `layerFromBackend`); `make` and `layer` use the embedded backend (`EmbeddedBackend`).
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as BucketProps from "./BucketProps.js"
import * as EmbeddedBackend from "./EmbeddedBackend.js"
import { KvBackend } from "./KvBackend.js"
import type * as Backend from "./KvBackend.js"
import type {
  InvalidBucketProps,
  LogError,
  MemoryLimitExceeded,
  PreconditionFailed,
  SnapshotError,
  StorageError,
  StoreLocked,
  TooManySiblings
} from "./KvError.js"
import * as internal from "./internal/store.js"

/**
 * The bucket type used when a request names none (or names `"default"`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultType: Uint8Array = new TextEncoder().encode("default")

/**
 * A bucket inside a bucket type.
 *
 * @since 0.1.0
 * @category models
 */
export interface BucketRef {
  /** The bucket type; `undefined` means the default type. */
  readonly type?: Uint8Array | undefined
  readonly bucket: Uint8Array
}

/**
 * One object's address.
 *
 * @since 0.1.0
 * @category models
 */
export interface Location extends BucketRef {
  readonly key: Uint8Array
}

/**
 * A key/value pair of user metadata or a secondary index entry.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pair {
  readonly key: Uint8Array
  readonly value?: Uint8Array
}

/**
 * A link to another object.
 *
 * @since 0.1.0
 * @category models
 */
export interface Link {
  readonly bucket?: Uint8Array
  readonly key?: Uint8Array
  readonly tag?: Uint8Array
}

/**
 * What a client stores: the value and its metadata.
 *
 * @since 0.1.0
 * @category models
 */
export interface ContentInput {
  readonly value: Uint8Array
  readonly contentType?: Uint8Array
  readonly charset?: Uint8Array
  readonly contentEncoding?: Uint8Array
  readonly links?: ReadonlyArray<Link>
  readonly usermeta?: ReadonlyArray<Pair>
  readonly indexes?: ReadonlyArray<Pair>
}

/**
 * Stored content: the client's content plus what the server sets on every write.
 *
 * @since 0.1.0
 * @category models
 */
export interface Content extends ContentInput {
  /** A tag unique to this write. */
  readonly vtag: Uint8Array
  /** Time of the write: whole seconds since the epoch ... */
  readonly lastMod: number
  /** ... and the microseconds within that second. */
  readonly lastModUsecs: number
}

/**
 * A stored object.
 *
 * @since 0.1.0
 * @category models
 */
export interface KvObject {
  /** The newest value. */
  readonly content: Content
  /**
   * The other siblings, newest first (absent or empty: `content` is the only value). There are siblings
   * only when the bucket has `allowMult` and writes were concurrent (neither saw the other). A put with
   * this object's `vclock` replaces all of them. `contents` lists them all.
   */
  readonly siblings?: ReadonlyArray<Content> | undefined
  /**
   * Opaque causal context; changes on every write of the object. Clients hand it back with puts (so the
   * store knows which siblings they have seen) and for `if_not_modified`. Never equal for two different
   * writes, even across delete and re-create.
   */
  readonly vclock: Uint8Array
}

/**
 * Every value of an object, newest first: `content` and its siblings.
 *
 * @since 0.1.0
 * @category getters
 */
export const contents = (object: KvObject): ReadonlyArray<Content> =>
  object.siblings === undefined || object.siblings.length === 0
    ? [object.content]
    : [object.content, ...object.siblings]

/**
 * A condition checked atomically with a put.
 *
 * @since 0.1.0
 * @category models
 */
export type PutCondition =
  /** Write without a condition (siblings with `allowMult` when the write is concurrent, else replace). */
  | { readonly _tag: "Always" }
  /** Write only if the key has no object (`if_none_match`). */
  | { readonly _tag: "IfNoneMatch" }
  /** Write only if the object exists and its vclock equals `vclock` (`if_not_modified`). */
  | { readonly _tag: "IfNotModified"; readonly vclock: Uint8Array | undefined }

/**
 * The outcome of a put.
 *
 * @since 0.1.0
 * @category models
 */
export interface PutResult {
  /** The key written (the generated one when the put named none). */
  readonly key: Uint8Array
  /** Whether the store generated `key`. */
  readonly generatedKey: boolean
  readonly object: KvObject
}

/**
 * Current size of the store.
 *
 * @since 0.1.0
 * @category models
 */
export interface Usage {
  readonly objects: number
  /** Approximate bytes held: payload sizes plus a fixed overhead per object. */
  readonly bytes: number
  readonly limitBytes: number
}

/**
 * The store.
 *
 * @since 0.1.0
 * @category tags
 */
export class KvStore extends Context.Tag("@warren/kv/KvStore")<KvStore, {
  /** The object at `location`, if any. */
  readonly get: (location: Location) => Effect.Effect<Option.Option<KvObject>, StorageError>
  /**
   * Stores `content` under `key` (a fresh unique key when `undefined`), checking `condition`
   * atomically with the write. `context` is the vclock the client fetched (default: an `IfNotModified`
   * condition's): in an `allowMult` bucket, the siblings it has seen are replaced and the others kept.
   * Byte arrays are copied, so callers may reuse their buffers.
   */
  readonly put: (
    bucket: BucketRef,
    key: Uint8Array | undefined,
    content: ContentInput,
    condition?: PutCondition,
    context?: Uint8Array
  ) => Effect.Effect<PutResult, PreconditionFailed | MemoryLimitExceeded | StorageError | TooManySiblings>
  /**
   * Deletes the object at `location`; `true` when there was one. Deleting a missing key succeeds. With a
   * `context` in an `allowMult` bucket, only the siblings the context has seen go; siblings written
   * concurrently with the delete stay.
   */
  readonly delete: (
    location: Location,
    context?: Uint8Array
  ) => Effect.Effect<boolean, MemoryLimitExceeded | StorageError>
  /**
   * Bucket names of a bucket type that hold at least one object, in bounded batches (never an
   * empty batch). Not a point-in-time view: writes during the listing may or may not show.
   */
  readonly listBuckets: (type: Uint8Array | undefined) => Stream.Stream<ReadonlyArray<Uint8Array>, StorageError>
  /** Keys of a bucket in bounded batches (never an empty batch); lazy, so a huge bucket is never copied. */
  readonly listKeys: (bucket: BucketRef) => Stream.Stream<ReadonlyArray<Uint8Array>, StorageError>
  /** A bucket's effective properties: its type's defaults and what was set on it. */
  readonly getBucketProps: (bucket: BucketRef) => Effect.Effect<BucketProps.BucketProps, StorageError>
  /** Merges `props` into what was set on the bucket; refused (nothing changed) when the result is invalid. */
  readonly setBucketProps: (
    bucket: BucketRef,
    props: BucketProps.Overrides
  ) => Effect.Effect<void, InvalidBucketProps | StorageError>
  /** Drops what was set on the bucket: its type's defaults apply again. */
  readonly resetBucketProps: (bucket: BucketRef) => Effect.Effect<void, StorageError>
  /** Current object count and memory use. */
  readonly usage: Effect.Effect<Usage, StorageError>
  /**
   * Makes the stored state compact and durable now: the embedded backend writes its snapshot (when
   * something changed since the last one) and drops the log it covers.
   */
  readonly snapshot: Effect.Effect<void, SnapshotError | StorageError>
}>() {}

/**
 * Options of the embedded store.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Upper bound of the approximate bytes held (default 256 MiB). */
  readonly maxBytes?: number | undefined
  /** Snapshot file: loaded on start, written on stop (and every `snapshotInterval`). */
  readonly dataFile?: string | undefined
  /** Also write the snapshot periodically while running (only when something changed). */
  readonly snapshotInterval?: Duration.DurationInput | undefined
  /** Most keys or buckets per listing batch (default 1000). */
  readonly listBatchSize?: number | undefined
  /** Most bytes of names per listing batch (default 64 KiB; a single longer name still forms a batch). */
  readonly listBatchBytes?: number | undefined
  /**
   * With a `dataFile`, when an acknowledged write is on disk (default `"always"`): `"always"` acknowledges
   * after the write-ahead log's fsync (group-committed: concurrent writes share one); `"interval"` after
   * the write to the OS, with an fsync every `syncInterval` (a crash of the machine loses at most that
   * long, a crash of the process nothing); `"none"` after the write to the OS, fsyncing only when a
   * segment is closed.
   */
  readonly sync?: "always" | "interval" | "none" | undefined
  /** The fsync period of `sync: "interval"` (default 1 second). */
  readonly syncInterval?: Duration.DurationInput | undefined
  /** Write a snapshot (compacting the log) once the log holds this many bytes (default 64 MiB). */
  readonly logMaxBytes?: number | undefined
}

/**
 * Why the embedded store could not start.
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError = SnapshotError | LogError | StoreLocked | MemoryLimitExceeded | ParseResult.ParseError

/**
 * The store over `backend`: Riak's semantics (causal clocks and siblings, bucket properties, vtags and
 * timestamps set on write, conditional puts checked by compare-and-set, generated keys, copies of client
 * bytes), the same on every backend.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromBackend: (backend: Backend.Backend) => Effect.Effect<Context.Tag.Service<KvStore>> =
  internal.fromBackend

/**
 * The store over the `KvBackend` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromBackend: Layer.Layer<KvStore, never, KvBackend> = Layer.effect(
  KvStore,
  Effect.flatMap(KvBackend, fromBackend)
)

/**
 * Builds the store over the embedded backend (`EmbeddedBackend.make`): in memory, and with a `dataFile`
 * loaded at start and kept on disk.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<Context.Tag.Service<KvStore>, StartError, Scope.Scope> =>
  Effect.flatMap(EmbeddedBackend.make(options), fromBackend)

/**
 * The store over the embedded backend as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<KvStore, StartError> => Layer.scoped(KvStore, make(options))

/**
 * Store options from the environment, for programs such as `warren pb serve`:
 *
 * - `WARREN_DATA_FILE`: the snapshot file (unset: in memory only);
 * - `WARREN_KV_MAX_BYTES`: the memory bound in bytes (default 256 MiB);
 * - `WARREN_KV_SNAPSHOT_INTERVAL`: a duration such as `5 minutes` (default 5 minutes, only with a data file);
 * - `WARREN_KV_SYNC`: `always` (default), `interval` or `none` (see `Options.sync`);
 * - `WARREN_KV_SYNC_INTERVAL`: the fsync period of `interval`, such as `100 millis` (default 1 second).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  dataFile: Config.option(Config.nonEmptyString("WARREN_DATA_FILE")),
  maxBytes: Config.option(
    Config.integer("WARREN_KV_MAX_BYTES").pipe(
      Config.validate({ message: "must be positive", validation: (n) => n > 0 })
    )
  ),
  snapshotInterval: Config.duration("WARREN_KV_SNAPSHOT_INTERVAL").pipe(Config.withDefault("5 minutes")),
  sync: Config.option(Config.literal("always", "interval", "none")("WARREN_KV_SYNC")),
  syncInterval: Config.option(Config.duration("WARREN_KV_SYNC_INTERVAL"))
}).pipe(Config.map(({ dataFile, maxBytes, snapshotInterval, sync, syncInterval }): Options => ({
  dataFile: Option.getOrUndefined(dataFile),
  maxBytes: Option.getOrUndefined(maxBytes),
  snapshotInterval: Option.isSome(dataFile) ? snapshotInterval : undefined,
  sync: Option.getOrUndefined(sync),
  syncInterval: Option.getOrUndefined(syncInterval)
})))

/**
 * The embedded store as a layer, with options from `config` (or another `Config`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options> = config
): Layer.Layer<KvStore, StartError | ConfigError.ConfigError> => Layer.scoped(KvStore, Effect.flatMap(options, make))
