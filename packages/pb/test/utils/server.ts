import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { PbServer, ServiceRegistry } from "@warren/pb"

/** Starts a server on a free port with `registrations`, in the current scope. */
export const startServer = (
  registrations: ReadonlyArray<ServiceRegistry.Registration>,
  options: PbServer.Options & { readonly security?: undefined } = {}
) =>
  Effect.gen(function*() {
    const registry = yield* ServiceRegistry.make
    yield* registry.registerAll(registrations)
    const server = yield* PbServer.make({ port: 0, ...options }).pipe(
      Effect.provideService(ServiceRegistry.ServiceRegistry, registry)
    )
    return { registry, server, port: server.address.port }
  })

/** Polls `check` (every 5 ms) until it holds. */
export const eventually = <E, R>(check: Effect.Effect<boolean, E, R>): Effect.Effect<void, E, R> =>
  Effect.asVoid(Effect.repeat(check, { until: (ok) => ok, schedule: Schedule.spaced("5 millis") }))
