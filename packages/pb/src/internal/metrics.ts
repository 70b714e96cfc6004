import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
// The module's binding, not the global: Node defines `globalThis.performance` as an accessor, read on every call.
import { performance } from "node:perf_hooks"

/** Connections accepted (riak's `pbc_connects`). */
export const connectionsAccepted = Metric.counter("warren_pb_connections_accepted", {
  description: "PB connections accepted",
  incremental: true
})

/** Live connections (riak's `pbc_active`). */
export const connectionsActive = Metric.gauge("warren_pb_connections_active", { description: "live PB connections" })

/** Requests (frames dispatched), tagged with `code`. */
export const requests = Metric.counter("warren_pb_requests", {
  description: "PB requests by message code",
  incremental: true
})

/** Error replies and closes, tagged with `kind`. */
export const errors = Metric.counter("warren_pb_errors", { description: "PB errors by kind", incremental: true })

/**
 * Request latency in milliseconds, one observation per batch: the requests a connection serves in one turn (e.g.
 * the frames of one read) are timed together, from the first one's dispatch until their replies (or the start of
 * a stream) are handed to the socket. A sequential client gives one observation per request; a pipelining client one
 * per batch, the latency of the batch's oldest request. Requests are counted exactly in `warren_pb_requests`.
 */
export const requestDuration = Metric.histogram(
  "warren_pb_request_duration_ms",
  MetricBoundaries.fromIterable([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000]),
  "PB request latency in milliseconds"
)

// One label array per code and per kind, built once: `unsafeUpdate` with the same array hits the metric's hook
// cache, so recording costs a map lookup instead of building a new key.
const codeLabels = Array.from({ length: 256 }, (_, code) => [MetricLabel.make("code", String(code))])

/** Adds `count` requests of `code`. */
export const recordRequests = (code: number, count: number): void => requests.unsafeUpdate(count, codeLabels[code]!)

/** Kinds of errors counted in `errors`. */
export type ErrorKind =
  | "unknown_code"
  | "decode"
  | "encode"
  | "unexpected_result"
  | "unexpected_request"
  | "process"
  | "defect"
  | "oversized_frame"
  | "request_during_stream"
  | "stream_timeout"
  | "too_many_connections"
  | "security"
  | "authentication"
  | "permission"
  | "tls"

const kindLabels = new Map<ErrorKind, ReadonlyArray<MetricLabel.MetricLabel>>()

/** Adds `count` errors of `kind`. */
export const recordErrors = (kind: ErrorKind, count: number): void => {
  let labels = kindLabels.get(kind)
  if (labels === undefined) {
    labels = [MetricLabel.make("kind", kind)]
    kindLabels.set(kind, labels)
  }
  errors.unsafeUpdate(count, labels)
}

const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

/**
 * A connection's counts, gathered per request and recorded once per batch (the requests served in one turn,
 * whose replies are written together): a map lookup per batch instead of a metric update per request.
 */
export class BatchCounts {
  // The batch's first code and its count in fields; further codes (rare) in lists made on demand. An idle
  // connection holds no list.
  private code = -1
  private count = 0
  private codes: Array<number> | undefined = undefined
  private counts: Array<number> | undefined = undefined
  private errorCounts: Map<ErrorKind, number> | undefined = undefined
  /** When the first request of the batch being served was dispatched (-1: none yet). */
  private started = -1

  request(code: number): void {
    if (code === this.code) {
      this.count++
    } else if (this.code < 0) {
      this.code = code
      this.count = 1
    } else {
      const codes = this.codes ??= []
      const counts = this.counts ??= []
      const at = codes.indexOf(code)
      if (at >= 0) {
        counts[at]!++
      } else {
        codes.push(code)
        counts.push(1)
      }
    }
  }

  error(kind: ErrorKind): void {
    const counts = this.errorCounts ??= new Map()
    counts.set(kind, (counts.get(kind) ?? 0) + 1)
  }

  /** Marks the batch's first dispatch (one clock read per batch, not per request). */
  startBatch(): void {
    if (this.started < 0) this.started = performance.now()
  }

  /**
   * Records the counts gathered since the last call, and the batch's latency: one `warren_pb_request_duration_ms`
   * observation, from the first request's dispatch to now (its replies have been handed to the socket, or are queued).
   */
  record(): void {
    if (this.started >= 0) {
      requestDuration.unsafeUpdate(performance.now() - this.started, noLabels)
      this.started = -1
    }
    if (this.code >= 0) {
      recordRequests(this.code, this.count)
      this.code = -1
      this.count = 0
      const codes = this.codes
      const counts = this.counts
      if (codes !== undefined && counts !== undefined) {
        this.codes = undefined
        this.counts = undefined
        for (let i = 0; i < codes.length; i++) recordRequests(codes[i]!, counts[i]!)
      }
    }
    if (this.errorCounts !== undefined) {
      const errorCounts = this.errorCounts
      this.errorCounts = undefined
      for (const [kind, count] of errorCounts) recordErrors(kind, count)
    }
  }
}
