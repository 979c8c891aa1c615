// The `myriad` CLI's subcommands. Each takes its flags as parsed by main.cpp
// (args.h), prints its result (JSON where the issue names fields) and returns
// the process exit code: 0, 2 for a bad argument, 1 for any other failure;
// errors go to stderr naming what is wrong.
#pragma once

#include "args.h"

namespace myriad::cli {

int cmd_selfcheck();
int cmd_tokenize(const TokenizeArgs& args);
int cmd_detokenize(const DetokenizeArgs& args);
int cmd_make_model(const MakeModelArgs& args);
int cmd_make_adapter(const MakeAdapterArgs& args);
int cmd_logits(const LogitsArgs& args);
int cmd_generate(const GenerateArgs& args);
int cmd_finetune(const FinetuneArgs& args);
int cmd_moe_create(const MoeCreateArgs& args);
int cmd_moe_inspect(const MoeInspectArgs& args);
int cmd_moe_corpus(const MoeCorpusArgs& args);
int cmd_moe_sweep(const MoeSweepArgs& args);
#ifdef MYRIAD_CLI_FULL
// Clients of a node's RPC API (cmd_client.cpp); node errors print the
// node's message and the error code, and exit 1.
int cmd_remote_generate(const RemoteGenerateArgs& args);
int cmd_adapters_add(const AdaptersAddArgs& args);
int cmd_adapters_list(const AdaptersListArgs& args);
int cmd_adapters_remove(const AdaptersRemoveArgs& args);
int cmd_cluster_list(const ClusterListArgs& args);
int cmd_jobs_create(const JobsCreateArgs& args);
int cmd_jobs_list(const JobsListArgs& args);
int cmd_jobs_get(const JobArgs& args);
int cmd_jobs_cancel(const JobArgs& args);
int cmd_jobs_events(const JobArgs& args);
#endif

}  // namespace myriad::cli
