/**
 * Which service owns which message code (riak_api's `riak_api_pb_registrar`). The table lives in STM, so every
 * change is one atomic step: a connection dispatching at the same time sees the table before or after it.
 *
 * Registration after the server started is normal: live connections see new services on their next request.
 *
 * Differences from riak: codes must be in 1..255 (riak accepts codes that can never be dispatched) and list forms
 * are all-or-nothing (riak stops at the first error and keeps what it did). As in riak, `swap` takes a range that
 * exactly matches one registration.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as STM from "effect/STM"
import * as TMap from "effect/TMap"
import * as TRef from "effect/TRef"
import type { PbService } from "./PbService.js"

/**
 * `min > max`, or a code outside 1..255 (riak's `invalid_message_code_range`).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidCodeRange extends Data.TaggedError("InvalidCodeRange")<{
  readonly min: number
  readonly max: number
}> {
  override get message(): string {
    return `invalid message code range ${this.min}..${this.max} (codes are 1..255, min <= max)`
  }
}

/**
 * Some codes of the range already belong to a service (riak's `{already_registered, Codes}`).
 *
 * @since 0.1.0
 * @category errors
 */
export class AlreadyRegistered extends Data.TaggedError("AlreadyRegistered")<{
  readonly codes: ReadonlyArray<number>
}> {
  override get message(): string {
    return `message codes already registered: ${this.codes.join(", ")}`
  }
}

/**
 * The first code of the range that no service owns (riak's `{unregistered, Code}`).
 *
 * @since 0.1.0
 * @category errors
 */
export class Unregistered extends Data.TaggedError("Unregistered")<{ readonly code: number }> {
  override get message(): string {
    return `message code ${this.code} is not registered`
  }
}

/**
 * The first code of the range that another service owns (riak's `{not_owned, Code}`).
 *
 * @since 0.1.0
 * @category errors
 */
export class NotOwned extends Data.TaggedError("NotOwned")<{ readonly code: number; readonly owner: string }> {
  override get message(): string {
    return `message code ${this.code} belongs to ${this.owner}`
  }
}

/**
 * `swap` of a range that is not exactly one registered range (riak's `{range_not_registered, Range}`).
 *
 * @since 0.1.0
 * @category errors
 */
export class RangeNotRegistered extends Data.TaggedError("RangeNotRegistered")<{
  readonly min: number
  readonly max: number
}> {
  override get message(): string {
    return `message code range ${this.min}..${this.max} is not a registered range`
  }
}

/**
 * Any registry error.
 *
 * @since 0.1.0
 * @category errors
 */
export type RegistryError = InvalidCodeRange | AlreadyRegistered | Unregistered | NotOwned | RangeNotRegistered

/**
 * A service with its code range (riak's `{Module, MinCode, MaxCode}`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Registration {
  readonly service: PbService
  readonly min: number
  readonly max: number
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const registration = (service: PbService, min: number, max: number = min): Registration => ({
  service,
  min,
  max
})

/**
 * The registry.
 *
 * @since 0.1.0
 * @category models
 */
export interface Registry {
  /** Gives `min..max` (or the single code `min`) to `service`. */
  readonly register: (
    service: PbService,
    min: number,
    max?: number
  ) => Effect.Effect<void, InvalidCodeRange | AlreadyRegistered>
  /** Registers every entry, or none of them. */
  readonly registerAll: (
    registrations: Iterable<Registration>
  ) => Effect.Effect<void, InvalidCodeRange | AlreadyRegistered>
  /** Takes `min..max` (or `min`) back from `service`; nothing changes unless `service` owns every code. */
  readonly deregister: (
    service: PbService,
    min: number,
    max?: number
  ) => Effect.Effect<void, InvalidCodeRange | Unregistered | NotOwned>
  /** Deregisters every entry, or none of them. */
  readonly deregisterAll: (
    registrations: Iterable<Registration>
  ) => Effect.Effect<void, InvalidCodeRange | Unregistered | NotOwned>
  /**
   * Gives the registered range `min..max` to `service` in one step (riak's `swap/3`: the range must exactly match
   * one registration, e.g. `10..11` registered as such, not `10` of it nor `10..12` over two registrations).
   */
  readonly swap: (
    service: PbService,
    min: number,
    max: number
  ) => Effect.Effect<void, InvalidCodeRange | RangeNotRegistered>
  /** The service owning `code`. */
  readonly lookup: (code: number) => Effect.Effect<Option.Option<PbService>>
  /**
   * The service owning `code`, read synchronously from the table as of the last committed change (what the
   * server uses on every request). Like `lookup`, it sees a table before or after a change, never a mix.
   */
  readonly unsafeLookup: (code: number) => PbService | undefined
  /** The registered services, each once, sorted by name. */
  readonly services: Effect.Effect<ReadonlyArray<PbService>>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ServiceRegistry extends Context.Tag("@warren/pb/ServiceRegistry")<ServiceRegistry, Registry>() {}

const validate = (min: number, max: number): STM.STM<void, InvalidCodeRange> =>
  Number.isInteger(min) && Number.isInteger(max) && min >= 1 && max <= 255 && min <= max
    ? STM.void
    : STM.fail(new InvalidCodeRange({ min, max }))

/**
 * Makes an empty registry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Registry> = Effect.gen(function*() {
  const table = yield* TMap.empty<number, PbService>()
  // The registrations as made (riak's ranges): `swap` must name one of them exactly.
  const ranges = yield* TRef.make<ReadonlyArray<Registration>>([])
  const version = yield* TRef.make(0)
  // A read-only copy of the table for synchronous lookups, replaced after every commit by the copy made inside
  // that commit (so it is always a committed state); a slower commit never replaces a newer copy.
  let snapshot: { readonly version: number; readonly services: ReadonlyArray<PbService | undefined> } = {
    version: 0,
    services: []
  }
  const commit = <E>(change: STM.STM<void, E>): Effect.Effect<void, E> =>
    STM.commit(
      STM.gen(function*() {
        yield* change
        const next = (yield* TRef.get(version)) + 1
        yield* TRef.set(version, next)
        const services = new Array<PbService | undefined>(256)
        for (const [code, service] of yield* TMap.toArray(table)) services[code] = service
        return { version: next, services }
      })
    ).pipe(Effect.map((next) => {
      if (next.version > snapshot.version) snapshot = next
    }))

  const registerSTM = (service: PbService, min: number, max: number) =>
    STM.gen(function*() {
      yield* validate(min, max)
      const taken: Array<number> = []
      for (let code = min; code <= max; code++) {
        if (yield* TMap.has(table, code)) taken.push(code)
      }
      if (taken.length > 0) return yield* STM.fail(new AlreadyRegistered({ codes: taken }))
      for (let code = min; code <= max; code++) yield* TMap.set(table, code, service)
      yield* TRef.update(ranges, (all) => [...all, { service, min, max }])
    })

  const deregisterSTM = (service: PbService, min: number, max: number) =>
    STM.gen(function*() {
      yield* validate(min, max)
      for (let code = min; code <= max; code++) {
        const owner = yield* TMap.get(table, code)
        if (Option.isNone(owner)) return yield* STM.fail(new Unregistered({ code }))
        if (owner.value !== service) return yield* STM.fail(new NotOwned({ code, owner: owner.value.name }))
      }
      for (let code = min; code <= max; code++) yield* TMap.remove(table, code)
      // What remains of the service's ranges that overlap the removed codes.
      yield* TRef.update(ranges, (all) =>
        all.flatMap((r) => {
          if (r.service !== service || r.max < min || r.min > max) return [r]
          const rest: Array<Registration> = []
          if (r.min < min) rest.push({ service, min: r.min, max: min - 1 })
          if (r.max > max) rest.push({ service, min: max + 1, max: r.max })
          return rest
        }))
    })

  const swapSTM = (service: PbService, min: number, max: number) =>
    STM.gen(function*() {
      yield* validate(min, max)
      const all = yield* TRef.get(ranges)
      const at = all.findIndex((r) => r.min === min && r.max === max)
      if (at < 0) return yield* STM.fail(new RangeNotRegistered({ min, max }))
      for (let code = min; code <= max; code++) yield* TMap.set(table, code, service)
      yield* TRef.set(ranges, all.map((r, i) => (i === at ? { service, min, max } : r)))
    })

  const registry: Registry = {
    register: (service, min, max = min) => commit(registerSTM(service, min, max)),
    registerAll: (registrations) =>
      commit(STM.forEach(registrations, (r) => registerSTM(r.service, r.min, r.max), { discard: true })),
    deregister: (service, min, max = min) => commit(deregisterSTM(service, min, max)),
    deregisterAll: (registrations) =>
      commit(STM.forEach(registrations, (r) => deregisterSTM(r.service, r.min, r.max), { discard: true })),
    swap: (service, min, max) => commit(swapSTM(service, min, max)),
    lookup: (code) => STM.commit(TMap.get(table, code)),
    unsafeLookup: (code) => snapshot.services[code],
    services: STM.commit(TMap.values(table)).pipe(
      Effect.map((all) => [...new Set(all)].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)))
    )
  }
  return registry
})

/**
 * An empty registry.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<ServiceRegistry> = Layer.effect(ServiceRegistry, make)

/**
 * Registers `registrations` when the layer is built and deregisters them when it is released (a host
 * application's start and stop, as riak applications do).
 *
 * @since 0.1.0
 * @category layers
 */
export const registered = (
  registrations: ReadonlyArray<Registration>
): Layer.Layer<never, InvalidCodeRange | AlreadyRegistered, ServiceRegistry> =>
  Layer.scopedDiscard(
    Effect.flatMap(ServiceRegistry, (registry) =>
      Effect.acquireRelease(
        registry.registerAll(registrations),
        () => Effect.ignore(registry.deregisterAll(registrations))
      ))
  )
