import * as Data from "effect/Data"

/** Why an AMQP operation failed. */
export type AmqpErrorReason =
  | "Connect"
  | "ConnectionLost"
  | "ChannelOpen"
  | "ChannelLost"
  | "Closed"
  | "Config"
  | "Timeout"

/** An AMQP connection or channel failure, with the operation that failed as `reason`. */
export class AmqpError extends Data.TaggedError("AmqpError")<{
  readonly reason: AmqpErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

/** The message of an unknown thrown value, for error texts. */
export const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)
