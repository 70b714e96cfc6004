/**
 * The storage interface under `KvStore`: what a backend (the embedded store, PostgreSQL, ...) must
 * provide. Riak's semantics (vclocks, vtags, conditional puts, generated keys, copying of client bytes)
 * live once, in `KvStore.fromBackend`, so they behave the same on every backend; a backend only stores
 * records and offers an atomic per-key compare-and-set.
 *
 * `test/support/conformance.ts` holds the suite every backend must pass.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type * as BucketProps from "./BucketProps.js"
import type { MemoryLimitExceeded, SnapshotError, StorageError } from "./KvError.js"
import type { Content, Usage } from "./KvStore.js"

/**
 * One object's full address. The bucket type is always explicit here (`KvStore` maps an absent type
 * to `"default"`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Address {
  readonly type: Uint8Array
  readonly bucket: Uint8Array
  readonly key: Uint8Array
}

/**
 * What a backend keeps for one key: the content (with `siblings`, every value concurrent writes left) and
 * its opaque causal context.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredObject {
  /** Unique per write (`KvStore` makes them); compare-and-set compares these bytes. */
  readonly vclock: Uint8Array
  /** The newest value. */
  readonly content: Content
  /** The other siblings, newest first (absent or empty: one value). Stored and returned as given. */
  readonly siblings?: ReadonlyArray<Content> | undefined
}

/**
 * A storage backend. Byte arrays handed to a backend are owned by it from then on (callers never
 * mutate them); those it returns must not be mutated by callers either.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  /** A short name for errors and logs, such as `"embedded"` or `"postgres"`. */
  readonly name: string
  /** The record at `address`, if any. */
  readonly get: (address: Address) => Effect.Effect<Option.Option<StoredObject>, StorageError>
  /**
   * Atomically, for one key: when its current vclock is `expected` (`None`: the key has no record),
   * replaces the record by `next` (`None`: removes it) and succeeds with `true`; otherwise changes
   * nothing and succeeds with `false`. Succeeding means the change is as durable as the backend's
   * configuration promises (for the embedded store's default `sync: "always"`: on disk).
   */
  readonly compareAndSet: (
    address: Address,
    expected: Option.Option<Uint8Array>,
    next: Option.Option<StoredObject>
  ) => Effect.Effect<boolean, MemoryLimitExceeded | StorageError>
  /** Removes the record at `address`, whatever it is; `true` when there was one. Durable like `compareAndSet`. */
  readonly delete: (address: Address) => Effect.Effect<boolean, StorageError>
  /**
   * Bucket names of a bucket type that hold at least one record, in bounded batches (never an empty
   * batch). Not a point-in-time view: writes during the listing may or may not show.
   */
  readonly listBuckets: (type: Uint8Array) => Stream.Stream<ReadonlyArray<Uint8Array>, StorageError>
  /** Keys of a bucket in bounded batches (never an empty batch), without copying the whole bucket. */
  readonly listKeys: (type: Uint8Array, bucket: Uint8Array) => Stream.Stream<ReadonlyArray<Uint8Array>, StorageError>
  /**
   * The record at `address` and the properties set on its bucket, read together (what a put needs first;
   * one round trip on a database).
   */
  readonly getWithBucketProps: (address: Address) => Effect.Effect<{
    readonly object: Option.Option<StoredObject>
    readonly props: Option.Option<BucketProps.Overrides>
  }, StorageError>
  /** The properties set on a bucket (`None`: none set, the type's defaults apply). */
  readonly getBucketProps: (
    type: Uint8Array,
    bucket: Uint8Array
  ) => Effect.Effect<Option.Option<BucketProps.Overrides>, StorageError>
  /**
   * Replaces the properties set on a bucket (`None`: removes them, back to the type's defaults). Durable
   * like `compareAndSet`, and seen by every store on this backend.
   */
  readonly setBucketProps: (
    type: Uint8Array,
    bucket: Uint8Array,
    props: Option.Option<BucketProps.Overrides>
  ) => Effect.Effect<void, StorageError>
  /** Current object count and size. */
  readonly usage: Effect.Effect<Usage, StorageError>
  /**
   * Makes the stored state compact and durable now (the embedded store writes its snapshot and drops
   * the log it covers); a no-op for backends that need none.
   */
  readonly checkpoint: Effect.Effect<void, SnapshotError | StorageError>
}

/**
 * The backend in context. Closing is the layer's scope: a backend releases its files, locks or
 * connections when the scope that built it closes.
 *
 * @since 0.1.0
 * @category tags
 */
export class KvBackend extends Context.Tag("@warren/kv/KvBackend")<KvBackend, Backend>() {}
