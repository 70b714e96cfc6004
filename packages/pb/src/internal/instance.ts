/**
 * The per-connection instance of a service: its callbacks closed over the connection's state, with the message
 * types erased so the server can hold instances of services of different types.
 */
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import type * as Option from "effect/Option"
import type {
  DecodeResult,
  Definition,
  Encoded,
  PbContext,
  PbService,
  Peer,
  ProcessResult,
  Result,
  StreamResult
} from "../PbService.js"

/** What the server gives a service instance about its connection. */
export interface ConnectionLink {
  readonly connectionId: number
  readonly peer: Peer
  readonly user: Effect.Effect<Option.Option<string>>
  /** Offers `info` from `instance` to the connection mailbox (suspends while it is full). */
  offer(instance: ServiceInstance, info: unknown): Effect.Effect<boolean>
  unsafeOffer(instance: ServiceInstance, info: unknown): boolean
  fork<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<Fiber.RuntimeFiber<A, E>>
}

/**
 * A service opened on one connection. `process`/`processStream` keep the new state; they return the service's
 * result as it came (a value, or an Effect of it) and may throw (a defect), so plain services cost no Effect.
 */
export interface ServiceInstance {
  readonly service: PbService
  readonly streams: boolean
  decode(code: number, body: Uint8Array): DecodeResult<unknown>
  encode(reply: unknown): Either.Either<Encoded, unknown>
  /**
   * The service's result as it came; the caller keeps the new state with `keepState` (a plain result's at once,
   * an Effect's on success: one continuation fewer than mapping the Effect, and one check of the result).
   */
  process(message: unknown): Result<ProcessResult<unknown, unknown, unknown>>
  keepState(result: { readonly state: unknown }): void
  processStream(info: unknown, reqId: unknown): Result<StreamResult<unknown, unknown>>
}

const plainTags = new Set<unknown>(["Reply", "Failure", "StartStream", "ReplyStream", "Ignore", "Done", "Unexpected"])

/** A plain result rather than an Effect of one (by tag first: cheaper than `isEffect`, and no Effect has them). */
const isPlain = <R>(result: R | Effect.Effect<R, unknown>): result is R =>
  plainTags.has((result as { readonly _tag?: unknown })._tag) || !Effect.isEffect(result)

/**
 * A service's context: one small object; its functions are made when first read (and can be passed around
 * detached, e.g. `const { send } = ctx`).
 */
class Context<Info> implements PbContext<Info> {
  private sendFn: ((info: Info) => Effect.Effect<boolean>) | undefined = undefined
  private unsafeSendFn: ((info: Info) => boolean) | undefined = undefined
  private forkFn: (<A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<Fiber.RuntimeFiber<A, E>>) | undefined =
    undefined

  constructor(private readonly link: ConnectionLink, private readonly instance: ServiceInstance) {}

  get connectionId(): number {
    return this.link.connectionId
  }

  get peer(): Peer {
    return this.link.peer
  }

  get user(): Effect.Effect<Option.Option<string>> {
    return this.link.user
  }

  get send(): (info: Info) => Effect.Effect<boolean> {
    return this.sendFn ??= (info) => this.link.offer(this.instance, info)
  }

  get unsafeSend(): (info: Info) => boolean {
    return this.unsafeSendFn ??= (info) => this.link.unsafeOffer(this.instance, info)
  }

  get fork(): <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<Fiber.RuntimeFiber<A, E>> {
    return this.forkFn ??= (effect) => this.link.fork(effect)
  }
}

/**
 * The instance as a class (methods on the prototype, the context made on first use): an idle connection holds
 * one small object per service it used.
 */
class Instance<Req, Resp, State, Info, ReqId> implements ServiceInstance {
  private context: PbContext<Info> | undefined = undefined

  constructor(
    readonly service: PbService,
    private readonly definition: Definition<Req, Resp, State, Info, ReqId>,
    private readonly link: ConnectionLink,
    private state: State
  ) {}

  get streams(): boolean {
    return this.definition.processStream !== undefined
  }

  private get ctx(): PbContext<Info> {
    return this.context ??= new Context<Info>(this.link, this)
  }

  private keep<R extends { readonly state: State }>(result: Result<R>): Result<R> {
    if (isPlain(result)) {
      this.state = result.state
      return result
    }
    return Effect.map(result, (r) => {
      this.state = r.state
      return r
    })
  }

  decode(code: number, body: Uint8Array): DecodeResult<unknown> {
    return this.definition.decode(code, body)
  }

  // The server only hands `encode` what this instance's `process`/`processStream` produced, `process` what its
  // `decode` produced, and `processStream` what its `ctx.send` accepted, so these casts restore erased types.
  encode(reply: unknown): Either.Either<Encoded, unknown> {
    return this.definition.encode(reply as Resp)
  }

  process(message: unknown): Result<ProcessResult<unknown, unknown, unknown>> {
    return this.definition.process(message as Req, this.state, this.ctx)
  }

  keepState(result: { readonly state: unknown }): void {
    this.state = result.state as State
  }

  processStream(info: unknown, reqId: unknown): Result<StreamResult<unknown, unknown>> {
    const processStream = this.definition.processStream
    if (processStream === undefined) return Effect.dieMessage(`service ${this.service.name} has no processStream`)
    return this.keep(processStream(info as Info, reqId as ReqId, this.state, this.ctx))
  }
}

/** How each service opens its instance on a connection, kept off the public `PbService` type. */
const openers = new WeakMap<PbService, (link: ConnectionLink) => Effect.Effect<ServiceInstance>>()

/** Records how `service` (made from `definition`) opens its instances. */
export const define = <Req, Resp, State, Info, ReqId>(
  service: PbService,
  definition: Definition<Req, Resp, State, Info, ReqId>
): void => {
  openers.set(service, (link) => openInstance(service, definition, link))
}

/** Opens `service` on a connection: runs its `init`. Dies for an object not made by `PbService.make`. */
export const open = (service: PbService, link: ConnectionLink): Effect.Effect<ServiceInstance> => {
  const opener = openers.get(service)
  return opener === undefined ? Effect.dieMessage(`${service.name} was not made by PbService.make`) : opener(link)
}

/** Runs `init` and opens the instance. */
const openInstance = <Req, Resp, State, Info, ReqId>(
  service: PbService,
  definition: Definition<Req, Resp, State, Info, ReqId>,
  link: ConnectionLink
): Effect.Effect<ServiceInstance> =>
  Effect.suspend(() => {
    const initial = definition.init()
    return Effect.isEffect(initial) ? initial : Effect.succeed(initial)
  }).pipe(Effect.map((state): ServiceInstance => new Instance(service, definition, link, state)))
