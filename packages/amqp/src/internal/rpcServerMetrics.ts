/** RPC server metrics (`warren_rpc_server_*`, tagged with the server name). */
import * as Metric from "effect/Metric"

/** Counters of all RPC servers, tagged with `server` = the server's name. */
export const metrics = {
  requests: Metric.counter("warren_rpc_server_requests_total", {
    description: "Requests received (including those without reply_to and those that failed)",
    incremental: true
  }),
  replies: Metric.counter("warren_rpc_server_replies_total", { description: "Replies published", incremental: true }),
  noReplyTo: Metric.counter("warren_rpc_server_no_reply_to_total", {
    description: "Requests without reply_to (acked, not handled)",
    incremental: true
  }),
  failures: Metric.counter("warren_rpc_server_failures_total", {
    description: "Requests whose handler failed (rejected without requeue)",
    incremental: true
  }),
  replyErrors: Metric.counter("warren_rpc_server_reply_errors_total", {
    description: "Replies that could not be published",
    incremental: true
  }),
  stale: Metric.counter("warren_rpc_server_stale_total", {
    description: "Deliveries skipped because their channel closed first (the broker redelivers them)",
    incremental: true
  })
} as const

export type Counter = Metric.Metric.Counter<number>

export interface Counters {
  readonly requests: Counter
  readonly replies: Counter
  readonly noReplyTo: Counter
  readonly failures: Counter
  readonly replyErrors: Counter
  readonly stale: Counter
}

export const countersFor = (name: string): Counters => ({
  requests: Metric.tagged(metrics.requests, "server", name),
  replies: Metric.tagged(metrics.replies, "server", name),
  noReplyTo: Metric.tagged(metrics.noReplyTo, "server", name),
  failures: Metric.tagged(metrics.failures, "server", name),
  replyErrors: Metric.tagged(metrics.replyErrors, "server", name),
  stale: Metric.tagged(metrics.stale, "server", name)
})
