import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { placeholder } from "@warren/process"

it.effect("smoke", () => Effect.sync(() => assert.isTrue(placeholder)))
