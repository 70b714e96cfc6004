/**
 * The services `warren pb serve` registers. Add a service by appending its registrations here (the Effect may build
 * resources in the server's scope, e.g. a store the service uses).
 */
import { BasicService } from "@warren/pb"
import type { ServiceRegistry } from "@warren/pb"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** The registrations of every service the command serves (built when the server starts). */
export const pbServices: Effect.Effect<ReadonlyArray<ServiceRegistry.Registration>, never, Scope.Scope> = Effect.sync(
  () => [...BasicService.registrations(BasicService.make())]
)
