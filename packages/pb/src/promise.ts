/**
 * The PB server for Node programs without Effect: `serve(options, handlers)` resolves with a running server
 * (`address`, `close()`); each handler answers the frames of its message codes with a value or a Promise.
 *
 * A thin layer over `PbServer` + `ServiceRegistry` + `PbService` (same framing, limits and error replies), run in a
 * ManagedRuntime that `close()` disposes. A handler that returns a plain value is served straight from the socket's
 * events (no fiber); a Promise is awaited in the connection's fiber. A rejected Promise becomes an `RpbErrorResp`
 * with the error's message; the connection and the server go on.
 *
 * @example
 * ```ts
 * import { serve } from "@warren/pb/promise"
 *
 * const server = await serve({ port: 8087 }, [
 *   { name: "echo", codes: [200, 200], handle: async (code, body) => ({ code: 201, body }) }
 * ])
 * console.log(server.address.port)
 * await server.close()
 * ```
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as PbServer from "./PbServer.js"
import * as PbService from "./PbService.js"
import * as ServiceRegistry from "./ServiceRegistry.js"

/**
 * A reply: its message code and body (empty if absent).
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  readonly code: number
  readonly body?: Uint8Array | string | undefined
}

/**
 * A service for Promise code: `handle` answers every frame whose code is in `codes` (`[min, max]`, inclusive).
 *
 * @since 0.1.0
 * @category models
 */
export interface Handler {
  /** A name for logs and metrics. */
  readonly name: string
  /** The message codes it owns, `[min, max]` inclusive (riak's registration range). */
  readonly codes: readonly [number, number]
  /** The reply to a request (a rejection or throw is sent as an error reply). */
  readonly handle: (code: number, body: Uint8Array) => Reply | PromiseLike<Reply>
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunningServer {
  /** Where it listens (the real port when started with port 0). */
  readonly address: { readonly host: string; readonly port: number }
  /** Stops listening, closes the connections (replies in flight are flushed first), frees the port. */
  readonly close: () => Promise<void>
}

const encode = (reply: Reply): Either.Either<PbService.Encoded, unknown> => {
  if (!Number.isInteger(reply.code) || reply.code < 0 || reply.code > 255) {
    return Either.left(new Error(`reply code ${String(reply.code)} is not a byte`))
  }
  const body = reply.body === undefined
    ? new Uint8Array()
    : typeof reply.body === "string"
    ? Buffer.from(reply.body)
    : reply.body
  return Either.right([Uint8Array.of(reply.code), body])
}

const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

const isPromiseLike = (value: unknown): value is PromiseLike<Reply> =>
  typeof value === "object" && value !== null && "then" in value && typeof value.then === "function"

const toService = (handler: Handler): ServiceRegistry.Registration =>
  ServiceRegistry.registration(
    PbService.make<{ readonly code: number; readonly body: Uint8Array }, Reply, undefined>({
      name: handler.name,
      init: () => undefined,
      decode: (code, body) => PbService.decoded({ code, body }),
      encode,
      process: (request, state) => {
        let result: Reply | PromiseLike<Reply>
        try {
          result = handler.handle(request.code, request.body)
        } catch (error) {
          return PbService.error(messageOf(error), state)
        }
        if (!isPromiseLike(result)) return PbService.reply(result, state)
        const pending = result
        return Effect.async<PbService.ProcessResult<Reply, undefined>>((resume) => {
          pending.then(
            (reply) => resume(Effect.succeed(PbService.reply(reply, state))),
            (error: unknown) => resume(Effect.succeed(PbService.error(messageOf(error), state)))
          )
        })
      }
    }),
    handler.codes[0],
    handler.codes[1]
  )

/**
 * Starts a PB server with `handlers` registered; resolves once it listens. Rejects with the typed error of the
 * Effect API (`PbServerError` for invalid options or a port in use, `InvalidCodeRange` / `AlreadyRegistered` for
 * bad code ranges): real `Error` subclasses with a `_tag`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = async (
  options: PbServer.Options & { readonly security?: undefined },
  handlers: ReadonlyArray<Handler>
): Promise<RunningServer> => {
  const layer = PbServer.layer(options).pipe(
    Layer.provide(ServiceRegistry.registered(handlers.map(toService))),
    Layer.provideMerge(ServiceRegistry.layer)
  )
  const runtime = ManagedRuntime.make(layer)
  const exit = await runtime.runPromiseExit(PbServer.PbServer)
  if (Exit.isFailure(exit)) {
    await runtime.dispose()
    const failure = Cause.failureOption(exit.cause)
    throw Option.isSome(failure) ? failure.value : Cause.squash(exit.cause)
  }
  return { address: exit.value.address, close: () => runtime.dispose() }
}
