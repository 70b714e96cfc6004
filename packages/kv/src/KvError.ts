/**
 * Failures of the KV store, as tagged errors. The PB service turns them into RpbErrorResp texts
 * (the conditional-put ones use Riak's exact texts).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * A conditional put whose condition did not hold. `reason` maps to Riak's error texts
 * (`match_found`, `modified`, `notfound`).
 *
 * @since 0.1.0
 * @category errors
 */
export class PreconditionFailed extends Data.TaggedError("PreconditionFailed")<{
  readonly reason: "MatchFound" | "Modified" | "NotFound"
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return this.reason === "MatchFound" ? "match_found" : this.reason === "Modified" ? "modified" : "notfound"
  }
}

/**
 * A write that would take the store over its memory bound; nothing was changed.
 *
 * @since 0.1.0
 * @category errors
 */
export class MemoryLimitExceeded extends Data.TaggedError("MemoryLimitExceeded")<{
  readonly limitBytes: number
  readonly usedBytes: number
  /** Bytes the store would hold after the write. */
  readonly requiredBytes: number
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return `Memory limit exceeded: the store holds ${this.usedBytes} of ${this.limitBytes} bytes ` +
      `and this write needs ${this.requiredBytes}`
  }
}

/**
 * Reading or writing the snapshot file failed. `Corrupt` means the file exists but is not a whole
 * snapshot (the store refuses to start rather than silently starting empty).
 *
 * @since 0.1.0
 * @category errors
 */
export class SnapshotError extends Data.TaggedError("SnapshotError")<{
  readonly reason: "Read" | "Write" | "Corrupt"
  readonly path: string
  readonly cause?: unknown
}> {
  /** @since 0.1.0 */
  override get message(): string {
    const detail = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    switch (this.reason) {
      case "Read":
        return `could not read the KV snapshot ${this.path}${detail}`
      case "Write":
        return `could not write the KV snapshot ${this.path}${detail}`
      case "Corrupt":
        return `the KV snapshot ${this.path} is damaged${detail}`
    }
  }
}

/**
 * The storage behind the store failed while serving a request (a failed log write or fsync, a lost
 * database connection, a store already closed). The request was not applied, or (for a write whose log
 * append failed after it became visible) not acknowledged; see docs/kv.md. Clients get an `RpbErrorResp`.
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly reason: "Io" | "Unavailable" | "Closed"
  /** Which backend failed (`"embedded"`, `"postgres"`, ...). */
  readonly backend: string
  readonly detail: string
  readonly cause?: unknown
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return `KV storage (${this.backend}) ${
      this.reason === "Io" ? "I/O error" : this.reason === "Unavailable" ? "unavailable" : "closed"
    }: ${this.detail}`
  }
}

/**
 * Reading or writing the write-ahead log failed. `Corrupt` means a damaged record that is not the
 * torn tail of the newest log segment (the store refuses to start rather than silently dropping data).
 *
 * @since 0.1.0
 * @category errors
 */
export class LogError extends Data.TaggedError("LogError")<{
  readonly reason: "Read" | "Write" | "Corrupt"
  readonly path: string
  readonly cause?: unknown
}> {
  /** @since 0.1.0 */
  override get message(): string {
    const detail = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    switch (this.reason) {
      case "Read":
        return `could not read the KV write-ahead log ${this.path}${detail}`
      case "Write":
        return `could not write the KV write-ahead log ${this.path}${detail}`
      case "Corrupt":
        return `the KV write-ahead log ${this.path} is damaged${detail}`
    }
  }
}

/**
 * Another running process holds the data files (their lock file names it). Two writers on one set of
 * files would silently lose each other's writes, so the second one fails at start instead.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreLocked extends Data.TaggedError("StoreLocked")<{
  /** The lock file. */
  readonly path: string
  /** The holder as the lock file records it. */
  readonly pid: number
  readonly host: string
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return `the KV data files are in use by process ${this.pid} on ${this.host} (lock file ${this.path}); ` +
      `stop that server first, or give this one another data file`
  }
}

/**
 * Bucket properties a client tried to set that warren refuses: an invalid value (`n_val` 0, both
 * `allow_mult` and `last_write_wins`) or a property warren does not implement (commit hooks, data types,
 * strong consistency, search). Nothing was changed.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidBucketProps extends Data.TaggedError("InvalidBucketProps")<{
  readonly property: string
  readonly detail: string
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return `Invalid bucket property ${this.property}: ${this.detail}`
  }
}

/**
 * A put that would leave more siblings than the store keeps (Riak's `max_siblings`, 100): a bucket with
 * `allowMult` whose clients never resolve. Nothing was changed; a put with the current vclock resolves them.
 *
 * @since 0.1.0
 * @category errors
 */
export class TooManySiblings extends Data.TaggedError("TooManySiblings")<{
  readonly siblings: number
  readonly limit: number
}> {
  /** @since 0.1.0 */
  override get message(): string {
    return `too_many_siblings: the put would leave ${this.siblings} siblings (at most ${this.limit}); ` +
      `resolve them with a put carrying the current vclock`
  }
}
