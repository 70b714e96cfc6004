/** Erlang-style processes (gen_server behaviours) and one-for-one supervisors on Effect. */
export * as DynamicSupervisor from "./DynamicSupervisor.js"
export * as Process from "./Process.js"
export * as Supervisor from "./Supervisor.js"
