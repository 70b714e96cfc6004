/**
 * Streams: riak's (`ctx.send` to `processStream` through the mailbox) and Effect `Stream`s (run in a fiber forked
 * for the request, their chunks sent through the same mailbox). While streaming, a request from the client is
 * riak's `Cannot send another request while one is in progress`, and the stream may idle out.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { PbServiceError, StreamResult } from "../PbService.js"
import type { Connection } from "./connection.js"
import { defect, handleFailure, sendReplies, unexpectedResult } from "./dispatch.js"
import { renderText, Texts } from "./errors.js"
import type { ServiceInstance } from "./instance.js"
import type { Envelope, Next, Step, Streaming } from "./state.js"
import { CONTINUE, toEffect } from "./state.js"

/** Starts streaming the elements of `replies` (the stream runs in a fiber forked for the request). */
export const startEffectStream = (
  conn: Connection,
  instance: ServiceInstance,
  replies: Stream.Stream<unknown, PbServiceError>
): Effect.Effect<Next> => {
  const token = {}
  const offer = (envelope: Envelope) => Effect.suspend(() => conn.openInbox()?.offer(envelope) ?? Effect.succeed(false))
  const runner = Stream.runForEachChunk(replies, (chunk) => offer({ _tag: "Chunk", token, replies: chunk })).pipe(
    Effect.matchCauseEffect({
      onSuccess: () => offer({ _tag: "End", token }),
      onFailure: (cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.succeed(false)
        const failure = Cause.failureOption(cause)
        return Option.isSome(failure) && !Cause.isDie(cause)
          ? offer({ _tag: "Fail", token, error: failure.value })
          : offer({ _tag: "Defect", token, cause })
      }
    })
  )
  return conn.setState({ ...conn.state, streaming: { _tag: "Effect", instance, token } }).pipe(
    Effect.zipRight(conn.fork(runner)),
    Effect.as("Continue" as const)
  )
}

/** Ends the stream: back to serving requests; the request's forked fibers are interrupted. */
const endStream = (conn: Connection): Effect.Effect<void> =>
  Effect.zipRight(
    conn.setState({ ...conn.state, streaming: undefined }),
    Effect.suspend(() => (conn.forks > 0 ? conn.clearForks() : Effect.void))
  )

/** One turn of a stream: serve what the mailbox holds, or wait for more (at most `streamIdleTimeout`). */
export const streamStep = (conn: Connection): Effect.Effect<Next> =>
  Effect.gen(function*() {
    const streaming = conn.state.streaming!
    if (conn.hasFrames() || conn.problem !== undefined) {
      conn.sendError(Texts.requestDuringStream, "request_during_stream")
      conn.recordCounts()
      return "Close" as const
    }
    if (conn.eof) return "Close" as const
    const batch = conn.inbox === undefined ? [] : conn.inbox.takeAll()
    if (batch.length === 0) {
      conn.recordCounts()
      yield* conn.flush()
      if (conn.writeBlocked) return "Continue" as const
      const timeout = conn.server.config.streamIdleTimeout
      if (timeout === undefined) {
        yield* conn.waitForWork
      } else if (Option.isNone(yield* Effect.timeoutOption(conn.waitForWork, timeout))) {
        conn.sendError(Texts.streamTimeout, "stream_timeout")
        yield* endStream(conn)
      }
      return "Continue" as const
    }
    const flushBytes = conn.server.config.flushBytes
    for (const envelope of batch) {
      // The stream ended, or the peer is gone (its close interrupts this fiber, but only at its next yield): the
      // rest is dropped instead of encoded for nobody.
      if (conn.state.streaming !== streaming || conn.closed) break
      const step = handleEnvelope(conn, streaming, envelope)
      const next = typeof step === "string" ? step : yield* step
      if (next === "Close") return next
      // The same rule as for requests: write at flushBytes, and wait for the socket to drain.
      if (conn.out.size >= flushBytes) yield* conn.flush()
    }
    return "Continue" as const
  })

const handleEnvelope = (conn: Connection, streaming: Streaming, envelope: Envelope): Step => {
  if (streaming._tag === "Mailbox") {
    if (envelope._tag !== "Info" || envelope.from !== streaming.instance) return "Continue"
    const instance = streaming.instance
    let result: ReturnType<ServiceInstance["processStream"]>
    try {
      result = instance.processStream(envelope.info, streaming.reqId)
    } catch (thrown) {
      return defect(conn, Cause.die(thrown), instance.service, -1, true)
    }
    if (!Effect.isEffect(result)) return afterStreamResult(conn, result, instance)
    return Effect.flatMap(Effect.exit(result), (exit) => {
      if (Exit.isSuccess(exit)) return toEffect(afterStreamResult(conn, exit.value, instance))
      return Effect.flatMap(
        handleFailure(conn, exit.cause, instance, -1, true),
        (next) => next === "Close" ? Effect.succeed(next) : Effect.as(endStream(conn), next)
      )
    })
  }
  if (envelope._tag === "Info" || envelope.token !== streaming.token) return "Continue"
  switch (envelope._tag) {
    case "Chunk":
      return sendReplies(conn, streaming.instance, envelope.replies, -1, true)
    case "End":
      return Effect.zipRight(endStream(conn), CONTINUE)
    case "Fail":
      conn.sendError(renderText(envelope.error.error), "process")
      return Effect.zipRight(endStream(conn), CONTINUE)
    case "Defect":
      return defect(conn, envelope.cause, streaming.instance.service, -1, true)
  }
}

const afterStreamResult = (
  conn: Connection,
  result: StreamResult<unknown, unknown>,
  instance: ServiceInstance
): Step => {
  switch (result._tag) {
    case "Reply":
      return sendReplies(conn, instance, result.replies, -1, true)
    case "Ignore":
      return "Continue"
    case "Done": {
      const step = sendReplies(conn, instance, result.replies, -1, true)
      return step === "Continue" ? Effect.zipRight(endStream(conn), CONTINUE) : step
    }
    case "Failure":
      conn.sendError(renderText(result.error), "process")
      return Effect.zipRight(endStream(conn), CONTINUE)
    default:
      unexpectedResult(conn, result)
      return Effect.zipRight(endStream(conn), CONTINUE)
  }
}
