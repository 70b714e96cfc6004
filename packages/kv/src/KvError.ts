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

