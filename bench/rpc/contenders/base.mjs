// The `warren` contender (Effect fibers) on another build of @warren/amqp (bench.mjs --engine): an A/B in one run.
import { open as openWarren } from "./warren.mjs"

export const label = "warren RpcClient (--engine build)"

export const open = (args) => openWarren(args)
