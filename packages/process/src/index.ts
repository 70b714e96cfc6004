/** Erlang-style processes (gen_server behaviours), one-for-one supervisors and reconnect policies on Effect. */
export * as Deadlines from "./Deadlines.js"
export * as DynamicSupervisor from "./DynamicSupervisor.js"
export * as EagerScheduler from "./EagerScheduler.js"
export * as Process from "./Process.js"
export * as Reconnect from "./Reconnect.js"
export * as Supervisor from "./Supervisor.js"
export * as Suspend from "./Suspend.js"
