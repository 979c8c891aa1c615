// The service's actors and the messages between them (CAF 0.17 typed
// interfaces; every payload a TypedWire of schema/messages.capnp, so a single
// node and a cluster run the same code). Who owns what, and every flow, is
// drawn in docs/architecture.md ("The service's actors"):
//
//   front end ──generate──> gateway ──resolve(+pin)──> registry ──pin──> adapter actor
//                              │ place (runtime/placement.h)
//                              └──submit──> scheduler ──submit──> worker (Engine + Executor, own thread)
//   worker ──event──> front end's sink                        (tokens, then exactly one final event: one hop)
//   worker ──released──> scheduler ──released──> gateway       (a final event: admit the next; unpin, forget
//   the route) worker ──load──> scheduler ──load──> gateway               (periodic: queue depths, slots)
//   worker ──residency──> registry ──residency──> adapter actor (a version entered or left a slot)
//   gateway ──unpin──> registry ──unpin──> adapter actor       (after a request's final event)
//
// One header for every interface because they name each other's handles.
// Include only in actor and wiring translation units (CAF is heavy).
#pragma once

#include <caf/all.hpp>
#include <string>

#include "actors/messages.h"

namespace myriad::actors {

using GenerateWire = TypedWire<schema::Generate>;            // front end -> gateway
using AcceptedWire = TypedWire<schema::Accepted>;            // gateway -> front end, scheduler -> gateway
using RegistryCallWire = TypedWire<schema::RegistryCall>;    // anyone -> registry
using AdapterAnswerWire = TypedWire<schema::AdapterAnswer>;  // registry -> caller
using AdapterListWire = TypedWire<schema::AdapterList>;      // registry -> caller
using PinWire = TypedWire<schema::Pin>;                      // registry -> adapter actor
using RetireWire = TypedWire<schema::Retire>;                // registry -> adapter actor
using AdapterStatusWire = TypedWire<schema::AdapterStatus>;  // adapter actor -> whoever asks
using AdapterFilesWire = TypedWire<schema::AdapterFiles>;    // registry -> a worker fetching an adapter
using JoinWire = TypedWire<schema::Join>;                    // a worker -> the gateway's door
using JoinAnswerWire = TypedWire<schema::JoinAnswer>;        // the door -> the worker
using ResumeWire = TypedWire<schema::ResumePoint>;           // a front end's sink -> the gateway

using event_atom = caf::atom_constant<caf::atom("event")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using generate_atom = caf::atom_constant<caf::atom("generate")>;
using resolve_atom = caf::atom_constant<caf::atom("resolve")>;
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using remove_atom = caf::atom_constant<caf::atom("remove")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using pin_atom = caf::atom_constant<caf::atom("pin")>;
using unpin_atom = caf::atom_constant<caf::atom("unpin")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using residency_atom = caf::atom_constant<caf::atom("residency")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;
using released_atom = caf::atom_constant<caf::atom("released")>;
using add_worker_atom = caf::atom_constant<caf::atom("addworker")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
using hello_atom = caf::atom_constant<caf::atom("hello")>;
using join_atom = caf::atom_constant<caf::atom("join")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using requeue_atom = caf::atom_constant<caf::atom("requeue")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using train_atom = caf::atom_constant<caf::atom("train")>;
using progress_atom = caf::atom_constant<caf::atom("progress")>;
using version_atom = caf::atom_constant<caf::atom("version")>;
using run_atom = caf::atom_constant<caf::atom("run")>;

// What a worker uses of the registry: where versions are (residency) and a
// version's files by id, fetched by a worker on another host.
using worker_registry_actor =
    caf::typed_actor<caf::reacts_to<residency_atom, ResidencyWire>,
                     caf::replies_to<fetch_atom, RegistryCallWire>::with<AdapterFilesWire>>;

// Receives requests' events: a front end's relay. Before the gateway places
// a request again (its worker was lost), it asks the sink which output tokens
// the client has (resume: request id, the new attempt), to resume from there.
using event_sink_actor = caf::typed_actor<caf::reacts_to<event_atom, EventWire>,
                                          caf::replies_to<resume_atom, uint64_t, uint32_t>::with<ResumeWire>>;

// Where a worker's trainer reports a job's steps and versions (the
// gateway's job host).
using job_sink_actor =
    caf::typed_actor<caf::reacts_to<progress_atom, TrainProgressWire>, caf::reacts_to<version_atom, TrainVersionWire>>;

// Where a worker's trainer answers a training run's calls (the gateway's job host).
using run_sink_actor = caf::typed_actor<caf::reacts_to<run_atom, RunAnswerWire>>;

// A worker's trainer: trains the jobs a gateway sends it beside its
// inference (TrainingWork on the worker's thread), reporting to the sink
// given with each; cancel stops one (by its id). Jobs of a sink that goes
// down (the gateway lost) stop too: the next gateway sends them again.
// It also holds training runs a client drives through the gateway (run:
// each call answered to the sink given with it, in the order sent); the
// runs of a sink that goes down are closed.
using trainer_actor =
    caf::typed_actor<caf::reacts_to<train_atom, TrainJobWire, job_sink_actor>, caf::reacts_to<cancel_atom, std::string>,
                     caf::reacts_to<run_atom, RunCallWire, run_sink_actor>>;

// The gateway's job host: trainers join through the door (add_worker: the
// worker's id and its trainer), and it is every trainer's job sink; the
// gateway tells it (leave: the worker's id) of a worker it stopped hearing.
using job_host_actor =
    caf::typed_actor<caf::reacts_to<progress_atom, TrainProgressWire>, caf::reacts_to<version_atom, TrainVersionWire>,
                     caf::reacts_to<add_worker_atom, std::string, trainer_actor>, caf::reacts_to<run_atom, RunAnswerWire>,
                     caf::reacts_to<leave_atom, std::string>>;

// What a scheduler tells the gateway: its worker's load reports (for
// placement) and each request's final event (to unpin its version and forget
// its route).
// A leaving worker's scheduler also hands back (requeue: id, attempt) each
// request that waited there and never reached the worker, to place elsewhere.
using load_sink_actor =
    caf::typed_actor<caf::reacts_to<load_atom, WorkerLoadWire>, caf::reacts_to<released_atom, EventWire>,
                     caf::reacts_to<requeue_atom, uint64_t, uint32_t>>;

// Admission for one worker: checks a request against the worker's limits,
// bounds what waits (overloaded beyond), feeds the worker.
using scheduler_actor =
    caf::typed_actor<caf::replies_to<submit_atom, SubmitWire, event_sink_actor>::with<AcceptedWire>,
                     caf::reacts_to<cancel_atom, CancelWire>,
                     caf::reacts_to<released_atom, EventWire>,  // the worker sent a request's final event
                     caf::reacts_to<load_atom, WorkerLoadWire>, caf::replies_to<drain_atom>::with<bool>,
                     // the worker leaves the cluster: hand back what waits here (requeue), refuse new
                     // submits, answer once what runs in the worker has finished
                     caf::replies_to<leave_atom>::with<bool>,
                     // wiring: where load reports, final events and requeues go (a rejoined gateway)
                     caf::reacts_to<attach_atom, load_sink_actor>,
                     // its own timer: an active set's quantum has passed (decide the active set again)
                     caf::reacts_to<tick_atom>,
                     // what it answered itself (requests cancelled while they waited here), as JSON
                     caf::replies_to<metrics_atom>::with<std::string>>;

// One device: the Engine and the Executor, stepped on the worker's own
// thread; what enters it is the scheduler actor's active set.
using worker_actor = caf::typed_actor<
    caf::reacts_to<submit_atom, SubmitWire, event_sink_actor>,  // run it; events go to the sink
    caf::reacts_to<cancel_atom, CancelWire>,                    // stop it (its final event says cancelled)
    // the request waits in the scheduler for its adapters' turn: bring their
    // bytes into host memory meanwhile (nothing is answered)
    caf::reacts_to<fetch_atom, SubmitWire>,
    caf::reacts_to<tick_atom>,                                  // report load and residency now
    caf::reacts_to<attach_atom, scheduler_actor>,       // wiring: where final events and load reports go
    caf::reacts_to<attach_atom, worker_registry_actor>,  // wiring: where residency reports go (a rejoin)
    caf::replies_to<drain_atom>::with<bool>,            // finish what is in flight, then stop
    caf::replies_to<metrics_atom>::with<std::string>>;  // the engine's metrics (JSON)

// One adapter (tenant/name): its versions' pins, deletes waiting for them,
// and where each version is on each worker.
using adapter_actor = caf::typed_actor<
    caf::replies_to<pin_atom, AdapterInfoWire, PinWire>::with<AdapterAnswerWire>,  // pin, or notFound if
                                                                                   // retired
    caf::reacts_to<unpin_atom, PinWire>,
    caf::replies_to<retire_atom, RetireWire>::with<bool>,  // answered once the versions are unpinned
    caf::reacts_to<residency_atom, ResidencyWire>, caf::replies_to<status_atom>::with<AdapterStatusWire>>;

// The adapter store's owner: names resolve here, and adapter actors live here.
using registry_actor =
    caf::typed_actor<caf::replies_to<resolve_atom, RegistryCallWire>::with<AdapterAnswerWire>,
                     caf::replies_to<publish_atom, RegistryCallWire>::with<AdapterAnswerWire>,
                     caf::replies_to<remove_atom, RegistryCallWire>::with<AdapterListWire>,
                     caf::replies_to<list_atom, RegistryCallWire>::with<AdapterListWire>,
                     caf::reacts_to<unpin_atom, PinWire>, caf::reacts_to<residency_atom, ResidencyWire>,
                     caf::replies_to<status_atom, RegistryCallWire>::with<AdapterStatusWire>,
                     // a version's files by id ("tenant/name@N" in the call's name), for a worker
                     caf::replies_to<fetch_atom, RegistryCallWire>::with<AdapterFilesWire>>;

// The front door: resolves, pins, places, relays events, cancels, drains.
using gateway_actor =
    caf::typed_actor<caf::replies_to<generate_atom, GenerateWire, event_sink_actor>::with<AcceptedWire>,
                     caf::reacts_to<cancel_atom, CancelWire>, caf::reacts_to<event_atom, EventWire>,
                     caf::reacts_to<load_atom, WorkerLoadWire>, caf::reacts_to<released_atom, EventWire>,
                     caf::reacts_to<requeue_atom, uint64_t, uint32_t>,
                     // one worker (by id) leaves: placed on no more; false when no such worker is up
                     caf::replies_to<drain_atom, std::string>::with<bool>,
                     // wiring: a worker's id and its scheduler
                     caf::reacts_to<add_worker_atom, std::string, scheduler_actor>,
                     caf::replies_to<drain_atom>::with<bool>,
                     // its own timers: the wait of a request held for want of a worker ends;
                     // the periodic check for workers whose load reports (heartbeats) stopped
                     caf::reacts_to<tick_atom, uint64_t>, caf::reacts_to<tick_atom>,
                     // its view of the workers (placement's load, liveness) and what it holds, as JSON
                     caf::replies_to<metrics_atom>::with<std::string>>;

// Where workers join a gateway (published on --cluster): hello gives the
// connection a one-time nonce; join proves the cluster secret over it
// (JoinWire.proof), names the worker's base fingerprint and hands over its
// scheduler. Accepted: the gateway's load sink and the registry's worker
// face, the only handles a member receives.
// The worker's trainer (null when it does not train) goes to the job host.
using cluster_door_actor = caf::typed_actor<
    caf::replies_to<hello_atom>::with<std::string>,
    caf::replies_to<join_atom, JoinWire, scheduler_actor, trainer_actor>::with<JoinAnswerWire, load_sink_actor,
                                                                               worker_registry_actor>>;

}  // namespace myriad::actors
