// The process-core benchmark: what the state Ref costs per message, what a Process.call costs (from a fiber and
// from Promise code, concurrency 1 and 64) against a bare fiber-to-fiber handoff, what state cells cost, and
// the heap and start cost of an idle DynamicSupervisor child. Every run is its own Node process (worker.mjs);
// rounds interleave the contenders.
import { fileURLToPath } from "node:url"
import { start } from "../lib/child.mjs"
import { runWorkloads } from "../lib/runner.mjs"

const here = (p) => fileURLToPath(new URL(p, import.meta.url))

const loadColumns = [
  { field: "throughput", title: "ops/s", digits: 0 },
  { field: "cpuUsPerOp", title: "CPU µs/op", digits: 2 },
  { field: "cpuUtil", title: "CPU util", digits: 2 }
]

const loadDescribe = (r) => `${Math.round(r.throughput)} ops/s  cpu ${r.cpuUsPerOp.toFixed(2)} µs/op  util ${r.cpuUtil.toFixed(2)}`

/** Workloads; `options.engine` (a dist directory) adds "base-*" contenders running another build of the core. */
const workloadsFor = (options) => {
  const base = options.engine === undefined ? [] : [
    { id: "base-fiber", label: "base: from fiber" },
    { id: "base-promise", label: "base: runPromise" }
  ]
  const refWorkload = (id, title) => ({
    id,
    title,
    params: {},
    primary: "cpuUsPerOp",
    higherIsBetter: false,
    contenders: [
      { id: "ref", label: "Ref (shipped)" },
      { id: "no-ref", label: "no Ref writes" },
      { id: "ref-per-message", label: "Ref.set per msg" }
    ],
    fields: loadColumns.map((c) => c.field),
    columns: loadColumns,
    describe: loadDescribe,
    goals: [
      { text: "shipped Ref costs <= 1.05x CPU per message of no Ref writes", contender: "ref", versus: "no-ref", field: "cpuUsPerOp", op: "<=", ratio: 1.05 },
      { text: "why the Ref is written at yields: Ref.set per message costs >= 1.5x CPU per message of no Ref writes", contender: "ref-per-message", versus: "no-ref", field: "cpuUsPerOp", op: ">=", ratio: 1.5 }
    ]
  })
  const callWorkload = (concurrency) => ({
    id: `calls-c${concurrency}`,
    title: `Process.call, concurrency ${concurrency}`,
    params: { concurrency },
    primary: "throughput",
    contenders: [
      { id: "fiber", label: "call from fiber" },
      { id: "bare-fiber", label: "bare handoff (fiber)" },
      { id: "promise", label: "call via runPromise" },
      { id: "bare-promise", label: "bare handoff (runPromise)" },
      ...base
    ],
    fields: loadColumns.map((c) => c.field),
    columns: loadColumns,
    describe: loadDescribe,
    goals: [
      { text: `call from fiber <= 1.6x CPU per call of a bare handoff, c${concurrency}`, contender: "fiber", versus: "bare-fiber", field: "cpuUsPerOp", op: "<=", ratio: 1.6 },
      { text: `call via runPromise <= 1.6x CPU per call of a bare handoff via runPromise, c${concurrency}`, contender: "promise", versus: "bare-promise", field: "cpuUsPerOp", op: "<=", ratio: 1.6 },
      ...(base.length === 0 ? [] : [
        { text: `call from fiber vs base build, CPU per call, c${concurrency}`, contender: "fiber", versus: "base-fiber", field: "cpuUsPerOp", op: "<=", ratio: 1 },
        { text: `call via runPromise vs base build, CPU per call, c${concurrency}`, contender: "promise", versus: "base-promise", field: "cpuUsPerOp", op: "<=", ratio: 1 }
      ])
    ]
  })
  const cellColumns = [
    { field: "nsPerUpdate", title: "ns/update", digits: 1 },
    { field: "cpuNsPerUpdate", title: "CPU ns/update", digits: 1 }
  ]
  const childColumns = [
    { field: "bytesPerChild", title: "heap bytes/child", digits: 0 },
    { field: "startCpuUsPerChild", title: "start CPU µs/child", digits: 2 },
    { field: "closeUsPerChild", title: "close µs/child", digits: 2 }
  ]
  return [
    refWorkload("ref-casts", "State Ref cost: casts in bursts of 256 + 1 call (plain handler, new state per message)"),
    refWorkload("ref-calls", "State Ref cost: sequential calls from one fiber"),
    ...options.concurrencies.map(callWorkload),
    {
      id: "state-cell",
      title: "State cell: one update per iteration of a fiber loop (200k iterations)",
      params: {},
      primary: "cpuNsPerUpdate",
      higherIsBetter: false,
      contenders: [
        { id: "Ref", label: "Ref.set" },
        { id: "SynchronizedRef", label: "SynchronizedRef.set" },
        { id: "local", label: "local variable" }
      ],
      fields: cellColumns.map((c) => c.field),
      columns: cellColumns,
      describe: (r) => `${r.nsPerUpdate.toFixed(1)} ns/update  cpu ${r.cpuNsPerUpdate.toFixed(1)} ns/update`,
      goals: [
        { text: "why Ref: SynchronizedRef.set costs >= 2x CPU per update of Ref.set", contender: "SynchronizedRef", versus: "Ref", field: "cpuNsPerUpdate", op: ">=", ratio: 2 }
      ]
    },
    {
      id: "idle-children",
      title: `Idle children: ${options.children} started, heap and start cost per child`,
      params: { children: options.children },
      primary: "bytesPerChild",
      higherIsBetter: false,
      contenders: [
        { id: "dynamic-child", label: "DynamicSupervisor child" },
        { id: "bare-fiber", label: "bare fiber (forkIn)" },
        { id: "process", label: "idle Process" }
      ],
      fields: childColumns.map((c) => c.field),
      columns: childColumns,
      describe: (r) =>
        `${Math.round(r.bytesPerChild)} B/child  start ${r.startCpuUsPerChild.toFixed(2)} µs/child  close ${r.closeUsPerChild.toFixed(2)} µs/child`,
      goals: [
        { text: "DynamicSupervisor child <= 1.75x the heap of a bare fiber", contender: "dynamic-child", versus: "bare-fiber", field: "bytesPerChild", op: "<=", ratio: 1.75 }
      ]
    }
  ].filter((w) => options.workloads === undefined || options.workloads.includes(w.id))
}

/** Runs the process-core workloads; `options`: { durationMs, warmupMs, rounds, concurrencies, children, engine, only, workloads }. */
export const runProcess = async (options) => {
  const workloads = workloadsFor(options).map((w) => ({
    ...w,
    contenders: w.contenders.filter((c) => options.only === undefined || options.only.includes(c.id))
  }))
  return runWorkloads({
    name: "process",
    rounds: options.rounds,
    options,
    workloads,
    runOne: async (workload, contender) => {
      const engine = contender.id.startsWith("base-") ? options.engine : undefined
      const worker = start(here("./worker.mjs"), {
        workload: workload.id.startsWith("calls-") ? "calls" : workload.id,
        contender: contender.id,
        concurrency: workload.params.concurrency,
        children: options.children,
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
        engine
      }, { execArgv: workload.id === "idle-children" ? ["--expose-gc"] : [] })
      try {
        const { result } = await worker.next("result", options.warmupMs + options.durationMs + 120_000)
        return result
      } finally {
        await worker.stop()
      }
    }
  })
}
