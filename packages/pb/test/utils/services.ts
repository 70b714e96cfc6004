/** Services used by the server tests (the shapes of riak_api's pb_service_test dummy services). */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { PbService, ServiceRegistry } from "@warren/pb"

export interface TextReply {
  readonly code: number
  readonly text: string
}

/** Encodes `{ code, text }` as the code byte + UTF-8 text; the text "unencodable" fails to encode. */
export const encodeText = (reply: TextReply): Either.Either<Uint8Array, string> =>
  reply.text === "unencodable"
    ? Either.left("cannot encode")
    : Either.right(Buffer.concat([Uint8Array.of(reply.code), Buffer.from(reply.text)]))

const decodeText = (code: number, body: Uint8Array) =>
  Buffer.from(body).toString() === "undecodable"
    ? PbService.decodeFailed("bad body")
    : PbService.decoded({ code, text: Buffer.from(body).toString() })

/**
 * Codes 101..102: 101 "x" replies 102 "ok"; the body selects other behaviours: "error", "format", "formatWith",
 * "fail" (PbServiceError), "failRunning" and "dieRunning" (the same from an Effect that runs), "unencodable", "throw",
 * "die", "unexpected", "null", "count" (replies the per-connection count;
 * "countExit" and "countEffect" the same from an Effect that is already an Exit, or one that must run).
 */
export const syncService = (name = "sync", okText = "ok") =>
  PbService.make({
    name,
    init: () => 0,
    decode: decodeText,
    encode: encodeText,
    process: (message, count) => {
      const next = count + 1
      switch (message.text) {
        case "error":
          return PbService.error("my error", next)
        case "format":
          return PbService.error(PbService.format({ reason: "bad", n: 1 }), next)
        case "formatWith":
          return PbService.error(PbService.formatWith("bad %s #%d", "thing", 7), next)
        case "fail":
          return Effect.fail(new PbService.PbServiceError({ error: "failed in Effect" }))
        case "unencodable":
          return PbService.replies([{ code: 102, text: "unencodable" }, { code: 102, text: "after" }], next)
        case "throw":
          throw new Error("service bug: internal detail")
        case "die":
          return Effect.die(new Error("service defect: internal detail"))
        case "failRunning": // a failure from an Effect that runs (not already an Exit)
          return Effect.flatMap(
            Effect.void,
            () => Effect.fail(new PbService.PbServiceError({ error: "failed running" }))
          )
        case "dieRunning":
          return Effect.flatMap(Effect.void, () => Effect.die(new Error("service defect: internal detail")))
        case "unexpected":
          return { _tag: "Bogus", state: next } as unknown as PbService.ProcessResult<TextReply, number>
        case "null":
          return null as unknown as PbService.ProcessResult<TextReply, number>
        case "count":
          return PbService.reply({ code: 102, text: String(next) }, next)
        case "countExit": // an Effect that is already an Exit
          return Effect.succeed(PbService.reply({ code: 102, text: String(next) }, next))
        case "countEffect": // an Effect that must run
          return Effect.sync(() => PbService.reply({ code: 102, text: String(next) }, next))
        default:
          return PbService.reply({ code: 102, text: okText }, next)
      }
    }
  })

type StreamInfo = { readonly reqId: number; readonly text: string }

/**
 * Codes 107..109, riak-style streaming: 107 forks a producer that sends itself "foo", "foo", "bar" (or, with body
 * "multi", one "multi" message answered with two replies at once, then "bar"); processStream replies 108 per "foo"
 * and ends with 109 "bar". Body "hang" starts a stream whose producer never sends and signals `interrupted` when
 * cancelled. Body "crash" makes processStream throw. Body "error" ends the stream with an error.
 */
export const streamService = (interrupted?: Deferred.Deferred<void>) =>
  PbService.make<{ code: number; text: string }, TextReply, number, StreamInfo, number>({
    name: "stream",
    init: () => 0,
    decode: decodeText,
    encode: encodeText,
    process: (message, reqId, ctx) =>
      Effect.gen(function*() {
        const id = reqId + 1
        const texts = message.text === "multi"
          ? ["multi", "bar"]
          : message.text === "crash"
          ? ["crash"]
          : message.text === "error"
          ? ["foo", "error"]
          : message.text === "hang"
          ? []
          : ["foo", "foo", "bar"]
        // Messages of another request id first: processStream must ignore them.
        yield* ctx.send({ reqId: -1, text: "foo" })
        yield* ctx.fork(
          Effect.gen(function*() {
            for (const text of texts) yield* ctx.send({ reqId: id, text })
            if (message.text === "hang") {
              yield* Effect.never.pipe(
                Effect.onInterrupt(() =>
                  interrupted === undefined ? Effect.void : Deferred.succeed(interrupted, void 0)
                )
              )
            }
          })
        )
        return PbService.stream(id, id)
      }),
    processStream: (info, reqId, state) => {
      if (info.reqId !== reqId) return PbService.ignore(state)
      switch (info.text) {
        case "foo":
          return PbService.reply({ code: 108, text: "foo" }, state)
        case "multi":
          return PbService.replies([{ code: 108, text: "foo" }, { code: 108, text: "foo" }], state)
        case "crash":
          throw new Error("stream bug")
        case "error":
          return PbService.error("stream error", state)
        default:
          return PbService.done(state, [{ code: 109, text: "bar" }])
      }
    }
  })

/** Codes 110..112, the Effect Stream form: 110 "n" streams n replies 111 "i" then 112 "done"; "fail" fails after one. */
export const effectStreamService = () =>
  PbService.make({
    name: "effect-stream",
    init: () => undefined,
    decode: decodeText,
    encode: encodeText,
    process: (message, state) => {
      if (message.text === "fail") {
        return PbService.streamOf(
          Stream.concat(
            Stream.succeed<TextReply>({ code: 111, text: "0" }),
            Stream.fail(new PbService.PbServiceError({ error: "stream failed" }))
          ),
          state
        )
      }
      if (message.text === "die") {
        return PbService.streamOf(
          Stream.concat(Stream.succeed<TextReply>({ code: 111, text: "0" }), Stream.die("boom")),
          state
        )
      }
      const n = Number(message.text)
      return PbService.streamOf(
        Stream.range(0, n - 1).pipe(
          Stream.map((i): TextReply => ({ code: 111, text: String(i) })),
          Stream.concat(Stream.succeed<TextReply>({ code: 112, text: "done" }))
        ),
        state
      )
    }
  })

export const syncRegistration = (service = syncService()) => ServiceRegistry.registration(service, 101, 102)

/**
 * Codes 140..141: replies with `n` bytes (the request body as a decimal number; empty: 1 MiB), through an Effect
 * (like a KV get), the reply allocated when encoded.
 */
export const bigReplyService = () =>
  PbService.make({
    name: "big",
    init: () => undefined,
    decode: (_code, body) => PbService.decoded(body.length === 0 ? 1024 * 1024 : Number(Buffer.from(body).toString())),
    encode: (n: number) => {
      const reply = Buffer.alloc(n)
      reply[0] = 141
      return Either.right(reply)
    },
    process: (n, state) => Effect.succeed(PbService.reply(n, state))
  })

export const bigReplyRegistration = () => ServiceRegistry.registration(bigReplyService(), 140, 141)
