/**
 * Serving one request: security gate, registry lookup, the service's instance (opened on first use), decode,
 * permission check, process, and the replies.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Encoded, PbService, PbServiceError, ProcessResult } from "../PbService.js"
import type { Connection } from "./connection.js"
import { renderText, Texts } from "./errors.js"
import type { Frame } from "./frame.js"
import type { ServiceInstance } from "./instance.js"
import { open } from "./instance.js"
import { authenticate, CODE_AUTH_REQ, CODE_START_TLS, startTls } from "./security.js"
import type { LoopStep, Next, Step } from "./state.js"
import { CONTINUE, toEffect } from "./state.js"
import { startEffectStream } from "./streaming.js"

const isProcessResult = (result: unknown): result is ProcessResult<unknown, unknown, unknown> => {
  if (typeof result !== "object" || result === null) return false
  const tag = (result as { readonly _tag?: unknown })._tag
  return tag === "Reply" || tag === "Failure" || tag === "StartStream" || tag === "ReplyStream" ||
    tag === "Unexpected"
}

/** The Effect as its Exit when it is one (an Exit is an Effect whose outcome is already known). */
const asExit = <A, E>(effect: Effect.Effect<A, E>): Exit.Exit<A, E> | undefined =>
  Exit.isExit(effect) ? effect as Exit.Exit<A, E> : undefined

/** Serves one frame from the connection's loop, according to the security phase. */
export const handleFrame = (conn: Connection, frame: Frame): LoopStep => {
  const security = conn.state.security
  switch (security._tag) {
    case "Off":
      if (frame.code === CODE_START_TLS) {
        conn.sendError(Texts.startTlsWhileOff, "security")
        return "Continue"
      }
      return dispatch(conn, frame)
    case "Authenticated":
      return dispatch(conn, frame)
    case "AwaitStartTls":
      if (frame.code === CODE_START_TLS) return startTls(conn)
      conn.sendError(Texts.startTlsFirst, "security")
      return "Continue"
    case "AwaitAuth":
      if (frame.code === CODE_AUTH_REQ) return authenticate(conn, frame, security.failures)
      conn.sendError(Texts.authenticateFirst, "security")
      return "Continue"
  }
}

const dispatch = (conn: Connection, frame: Frame): LoopStep => {
  conn.countRequest(frame.code)
  const service = conn.server.registry.unsafeLookup(frame.code)
  if (service === undefined) {
    conn.sendError(Texts.unknownCode(frame.code), "unknown_code")
    return "Continue"
  }
  const instance = conn.state.instances.get(service)
  if (instance !== undefined) return decodeStage(conn, instance, frame, true)
  return Effect.flatMap(Effect.exit(open(service, conn)), (opened) => {
    if (Exit.isFailure(opened)) return defect(conn, opened.cause, service, frame.code, false)
    const instances = new Map(conn.state.instances).set(service, opened.value)
    return Effect.zipRight(
      conn.setState({ ...conn.state, instances }),
      Effect.suspend(() => toEffect(decodeStage(conn, opened.value, frame, false)))
    )
  })
}

/** `inLoop`: called from the connection's loop itself (an effectful request may then be joined to it). */
function decodeStage(conn: Connection, instance: ServiceInstance, frame: Frame, inLoop: true): LoopStep
function decodeStage(conn: Connection, instance: ServiceInstance, frame: Frame, inLoop: false): Step
function decodeStage(conn: Connection, instance: ServiceInstance, frame: Frame, inLoop: boolean): LoopStep {
  let decoded: ReturnType<ServiceInstance["decode"]>
  try {
    decoded = instance.decode(frame.code, frame.body)
  } catch (thrown) {
    return defect(conn, Cause.die(thrown), instance.service, frame.code, false)
  }
  if (decoded._tag === "DecodeFailed") {
    conn.sendError(Texts.decodeError(decoded.reason), "decode")
    return "Continue"
  }
  const security = conn.server.config.security
  const permission = decoded.permission
  if (permission === undefined || security === undefined) {
    return inLoop
      ? processStage(conn, instance, decoded.message, frame.code, true)
      : processStage(conn, instance, decoded.message, frame.code, false)
  }
  const phase = conn.state.security
  const user = phase._tag === "Authenticated" ? phase.user : ""
  const message = decoded.message
  return Effect.flatMap(security.authorizer.check(user, permission), (allowed) => {
    if (allowed) return toEffect(processStage(conn, instance, message, frame.code, false))
    conn.sendError(Texts.permissionDenied(user, permission.permission, permission.target), "permission")
    return CONTINUE
  })
}

function processStage(
  conn: Connection,
  instance: ServiceInstance,
  message: unknown,
  code: number,
  inLoop: true
): LoopStep
function processStage(conn: Connection, instance: ServiceInstance, message: unknown, code: number, inLoop: false): Step
function processStage(
  conn: Connection,
  instance: ServiceInstance,
  message: unknown,
  code: number,
  inLoop: boolean
): LoopStep {
  // Latency is timed per batch (one clock read when the batch's first request is dispatched, one when its counts
  // are recorded): a clock read pair and a histogram update per request were ~6 % of the server's CPU.
  conn.counts.startBatch()
  let result: ReturnType<ServiceInstance["process"]>
  try {
    result = instance.process(message)
  } catch (thrown) {
    return defect(conn, Cause.die(thrown), instance.service, code, false)
  }
  // A plain result (checked by tag first: cheaper than isEffect, and no Effect has these tags): its state is kept
  // at once. Anything else that is not an Effect is answered as an unexpected result.
  if (isProcessResult(result)) {
    instance.keepState(result)
    return afterProcess(conn, result, instance, code)
  }
  if (!Effect.isEffect(result)) {
    if (typeof result === "object" && result !== null) {
      instance.keepState(result)
      return afterProcess(conn, result, instance, code)
    }
    unexpectedResult(conn, result)
    return conn.forks > 0 ? Effect.zipLeft(CONTINUE, conn.clearForks()) : "Continue"
  }
  // An Effect that is already an Exit (`Effect.succeed`, `Effect.fail`): its outcome is known, nothing to run.
  const done = asExit(result)
  if (done !== undefined) {
    if (Exit.isFailure(done)) return handleFailure(conn, done.cause, instance, code, false)
    instance.keepState(done.value)
    return afterProcess(conn, done.value, instance, code)
  }
  // From the loop, the Effect is joined to it: the loop runs it and answers with its outcome (no continuation per
  // request). Elsewhere, one continuation for both outcomes (not `exit` then `flatMap`).
  if (inLoop) return conn.join(result, instance, code)
  return Effect.matchCauseEffect(result, {
    onFailure: (cause) => handleFailure(conn, cause, instance, code, false),
    onSuccess: (value) => {
      instance.keepState(value)
      return toEffect(afterProcess(conn, value, instance, code))
    }
  })
}

export const afterProcess = (
  conn: Connection,
  result: ProcessResult<unknown, unknown, unknown>,
  instance: ServiceInstance,
  code: number
): Step => {
  let step: Step = "Continue"
  switch (result._tag) {
    case "Reply":
      step = sendReplies(conn, instance, result.replies, code, false)
      break
    case "Failure":
      conn.sendError(renderText(result.error), "process")
      break
    case "StartStream":
      if (!instance.streams) {
        unexpectedResult(conn, result)
        break
      }
      return conn.setState({ ...conn.state, streaming: { _tag: "Mailbox", instance, reqId: result.reqId } }).pipe(
        Effect.as("Continue" as const)
      )
    case "ReplyStream":
      return startEffectStream(conn, instance, result.stream)
    case "Unexpected":
      conn.sendError(Texts.defect, "unexpected_request")
      step = "Close"
      break
    default:
      unexpectedResult(conn, result)
  }
  if (conn.forks > 0) return Effect.zipLeft(toEffect(step), conn.clearForks())
  return step
}

/** A failure of process/processStream: a PbServiceError is an error reply, a defect closes the connection. */
export const handleFailure = (
  conn: Connection,
  cause: Cause.Cause<PbServiceError>,
  instance: ServiceInstance,
  code: number,
  inStream: boolean
): Effect.Effect<Next> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && !Cause.isDie(cause)) {
    conn.sendError(renderText(failure.value.error), "process")
    return CONTINUE
  }
  if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
  return defect(conn, cause, instance.service, code, inStream)
}

/** A bug in a service: a generic error reply (no internals), the defect logged, the connection closed. */
export const defect = (
  conn: Connection,
  cause: Cause.Cause<unknown>,
  service: PbService,
  code: number,
  inStream: boolean
): Effect.Effect<Next> => {
  conn.sendError(inStream ? Texts.streamDefect : Texts.defect, "defect")
  return Effect.logError(`PB service ${service.name} failed; closing connection ${conn.id}`, cause).pipe(
    Effect.annotateLogs({ service: service.name, code, connection: conn.id }),
    Effect.as("Close" as const)
  )
}

export const unexpectedResult = (conn: Connection, result: unknown): void => {
  conn.sendError(Texts.unknownResponse(result), "unexpected_result")
}

/** Encodes and queues replies (an encoding failure is an error reply in place of that reply). */
export const sendReplies = (
  conn: Connection,
  instance: ServiceInstance,
  replies: Iterable<unknown>,
  code: number,
  inStream: boolean
): Step => {
  // An array (the usual case) by index, any other iterable by its iterator.
  if (Array.isArray(replies)) {
    for (let i = 0; i < replies.length; i++) {
      const step = sendReply(conn, instance, replies[i], code, inStream)
      if (step !== undefined) return step
    }
    return "Continue"
  }
  for (const reply of replies) {
    const step = sendReply(conn, instance, reply, code, inStream)
    if (step !== undefined) return step
  }
  return "Continue"
}

/** Encodes and queues one reply; a Step only when encoding threw (a defect). */
const sendReply = (
  conn: Connection,
  instance: ServiceInstance,
  reply: unknown,
  code: number,
  inStream: boolean
): Step | undefined => {
  let encoded: Either.Either<Encoded, unknown>
  try {
    encoded = instance.encode(reply)
  } catch (thrown) {
    return defect(conn, Cause.die(thrown), instance.service, code, inStream)
  }
  if (!(Either.isRight(encoded) && conn.out.push(encoded.right))) conn.sendError(Texts.noEncoding, "encode")
  return undefined
}
