# odsync: `make` lists the targets. Everything a new machine needs is set up by these targets
# (Rust toolchain assumed; npm used to fetch the prebuilt DuckDB library).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

# Prebuilt DuckDB 1.5.6 (parquet built in), shipped in the official npm package; pinned by sha256.
# Building DuckDB's C++ from source (the `bundled` feature) takes 30+ minutes on 2 cores, so it is
# only the fallback where npm is missing or the machine is not linux x86_64.
DUCKDB_VERSION := 1.5.6-r.1
DUCKDB_NPM     := @duckdb/node-bindings-linux-x64@$(DUCKDB_VERSION)
DUCKDB_TGZ     := duckdb-node-bindings-linux-x64-$(DUCKDB_VERSION).tgz
DUCKDB_SHA256  := 1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff
# Outside the clone on purpose: a stable path keeps cargo's cache valid across fresh clones (CI).
ODSYNC_CACHE   ?= $(HOME)/.cache/odsync
DUCKDB_DIR     := $(ODSYNC_CACHE)/libduckdb-$(DUCKDB_VERSION)

# `testkit` builds the local ORD/FHIR server (`odsync serve`) and `odsync bench`, which the tests,
# the demo and the benchmark need; `cargo build --release` alone ships odsync without them.
ifeq ($(shell command -v npm >/dev/null 2>&1 && [ "$$(uname -sm)" = "Linux x86_64" ] && echo yes),yes)
  export DUCKDB_LIB_DIR := $(DUCKDB_DIR)
  LIBDUCKDB := $(DUCKDB_DIR)/libduckdb.so
  CARGO_FEATURES := --features testkit
else
  LIBDUCKDB :=
  CARGO_FEATURES := --features bundled,testkit
endif

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
ODSYNC := $(CARGO_TARGET_DIR)/debug/odsync

# The demo: a local ORD-compatible server on real ODS data, and the `demo` pipeline.
DEMO_STATES := tests/fixtures/ord-states
DEMO_WAREHOUSE ?= snapshots

.PHONY: help build test demo bench sync lint fmt clean duckdb airflow-check report-check

# `make airflow-check`: Apache Airflow from the package index in a virtual environment.
AIRFLOW_VERSION ?= 2.10.5
AIRFLOW_VENV    ?= $(ODSYNC_CACHE)/airflow-$(AIRFLOW_VERSION)
# Airflow's own constraint files live outside the package index; these pins keep pip's resolver
# from backtracking for an hour through connexion/flask versions that cannot work together.
AIRFLOW_PINS    := "apache-airflow==$(AIRFLOW_VERSION)" "connexion[flask]==2.14.2" "flask<2.3" "werkzeug<3" "sqlalchemy<2"

# The tests read the table directories with pyarrow, as an analyst would: a pinned pyarrow in a
# virtual environment outside the clone (reused by later clones, like the DuckDB library).
PYARROW_VERSION := 18.1.0
TEST_VENV       := $(ODSYNC_CACHE)/pyenv-pyarrow-$(PYARROW_VERSION)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(DUCKDB_DIR)/libduckdb.so:
	@echo "fetching prebuilt DuckDB $(DUCKDB_VERSION) from npm into $(DUCKDB_DIR)"
	mkdir -p "$(ODSYNC_CACHE)/npm"
	cd "$(ODSYNC_CACHE)/npm" && npm pack --silent "$(DUCKDB_NPM)" >/dev/null
	echo "$(DUCKDB_SHA256)  $(ODSYNC_CACHE)/npm/$(DUCKDB_TGZ)" | sha256sum --check --quiet
	rm -rf "$(DUCKDB_DIR).partial" && mkdir -p "$(DUCKDB_DIR).partial"
	tar -xzf "$(ODSYNC_CACHE)/npm/$(DUCKDB_TGZ)" -C "$(DUCKDB_DIR).partial" --strip-components=1 package/libduckdb.so package/LICENSE
	rm -rf "$(DUCKDB_DIR)" && mv "$(DUCKDB_DIR).partial" "$(DUCKDB_DIR)"

duckdb: $(LIBDUCKDB) ## Fetch the prebuilt DuckDB library (done by build/test/demo as needed)

build: $(LIBDUCKDB) ## Build odsync
	cargo build $(CARGO_FEATURES) --bins

$(TEST_VENV)/installed:
	rm -rf "$(TEST_VENV)" && python3 -m venv "$(TEST_VENV)"
	"$(TEST_VENV)/bin/pip" install --quiet --disable-pip-version-check "pyarrow==$(PYARROW_VERSION)"
	touch "$@"

test: $(LIBDUCKDB) $(TEST_VENV)/installed ## Run every test, then validate every pipeline file
	ODSYNC_TEST_PYTHON="$(TEST_VENV)/bin/python" cargo test $(CARGO_FEATURES)
	$(ODSYNC) validate

demo: build ## Offline demo: local ORD server, baseline, state change, incremental, merge, FHIR, TRUD baseline
	@tmp=$$(mktemp -d)
	$(ODSYNC) serve --states $(DEMO_STATES) --state demo-2021 --port-file "$$tmp/port" 2>"$$tmp/serve.log" &
	server=$$!
	trap 'kill $$server 2>/dev/null || true; rm -rf "$$tmp"' EXIT
	for _ in $$(seq 100); do [ -s "$$tmp/port" ] && break; kill -0 $$server || { cat "$$tmp/serve.log"; exit 1; }; sleep 0.1; done
	port=$$(cat "$$tmp/port")
	export ODSYNC_ORD_BASE_URL="http://127.0.0.1:$$port/ORD/2-0-0" ODSYNC_WAREHOUSE="$(DEMO_WAREHOUSE)"
	echo; echo "== 1. local ORD server on 127.0.0.1:$$port serving state demo-2021 (the real etr.csv of 2021 as ORD records)"
	echo "== 2. baseline (clock pinned to 2025-07-10)"
	ODSYNC_NOW=2025-07-10T02:00:00Z $(ODSYNC) run demo --full
	echo; echo "== 3. ODS changes: the server switches to state demo-2025-07 (the real etr.csv of July 2025)"
	python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$$port/_admin/state/demo-2025-07', method='POST'))"
	echo "== 4. incremental run from the watermark via /sync (clock 2025-07-16)"
	ODSYNC_NOW=2025-07-16T02:00:00Z $(ODSYNC) run demo
	echo; echo "== 4b. the field-level diff between the two versions"
	$(ODSYNC) diff demo --limit 12
	echo; echo "== 5. the same state again: nothing changed, so no new version"
	ODSYNC_NOW=2025-07-16T03:00:00Z $(ODSYNC) run demo
	echo; echo "== 6. the trust table: conflicts from the local table and overrides that disagree with ODS"
	$(ODSYNC) conflicts list demo
	id=$$($(ODSYNC) query "SELECT conflict_id FROM open_conflicts WHERE pipeline = 'demo' AND code = 'RAX' AND field = 'name'" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['rows'][0][0])")
	echo; echo "== 7. resolve the RAX name conflict by accepting the ODS name, and merge"
	ODSYNC_NOW=2025-07-16T04:00:00Z $(ODSYNC) conflicts resolve demo "$$id" --accept-ods --reason "merger confirmed" --by demo-user --merge
	echo; echo "== 8. provenance of RAX: where each value of the merged row came from"
	$(ODSYNC) provenance demo RAX
	echo; echo "== 9. history of RAX (SCD2) and the merged trust table"
	$(ODSYNC) history demo RAX
	$(ODSYNC) query "SELECT code, name, org_type, foundation_trust, trust_type, display_name, telephone, not_in_ods FROM latest_trusts WHERE pipeline = 'demo' AND code IN ('RAX', 'RH8', 'RWR', 'ZZ001') ORDER BY code"
	echo; echo "== 10. snapshots and runs"
	$(ODSYNC) snapshots list demo
	echo
	$(ODSYNC) runs demo --limit 6
	echo; echo "== 11. the catalog, queried through odsync"
	$(ODSYNC) query "SELECT version, count(*) AS organisations, count(*) FILTER (WHERE status = 'Active') AS active FROM snapshot_organisations WHERE pipeline = 'demo' GROUP BY version ORDER BY version"
	$(ODSYNC) query "SELECT code, name, status, operational_end FROM latest_organisations WHERE pipeline = 'demo' AND code IN ('G6V2S', 'RWR', 'RVVKC', 'RJY') ORDER BY code"
	echo; echo "== 12. ODS semantics: the dated hierarchy of a site and a trust, and mergers from ODS successions"
	$(ODSYNC) query "SELECT child_code, parent_code, rel_type, parent_primary_role, valid_from, valid_to, status FROM hierarchy WHERE pipeline = 'demo' AND child_code IN ('RVVKC', 'RWR') ORDER BY child_code, valid_from"
	$(ODSYNC) query "SELECT old_code, new_code, effective_date, active_successor_code, children_moved, children_orphaned FROM mergers WHERE pipeline = 'demo' ORDER BY old_code"
	echo; echo "== 13. the same organisations through the FHIR API of the local server (pipeline demo_fhir), compared with the ORD pipeline"
	ODSYNC_FHIR_BASE_URL="http://127.0.0.1:$$port/fhir" ODSYNC_FHIR_API_KEY=local-demo-key ODSYNC_NOW=2025-07-16T05:00:00Z $(ODSYNC) run demo_fhir
	$(ODSYNC) query "$$(for t in organisations roles relationships successors; do printf "SELECT '%s' AS table_name, (SELECT count(*) FROM latest_%s WHERE pipeline = 'demo') AS ord_rows, (SELECT count(*) FROM latest_%s WHERE pipeline = 'demo_fhir') AS fhir_rows, (SELECT count(*) FROM (SELECT * EXCLUDE (pipeline, version) FROM latest_%s WHERE pipeline = 'demo_fhir' EXCEPT ALL SELECT * EXCLUDE (pipeline, version) FROM latest_%s WHERE pipeline = 'demo')) AS fhir_rows_not_in_ord UNION ALL " $$t $$t $$t $$t $$t; done | sed 's/ UNION ALL $$//')"
	echo "Every FHIR row is identical in the ORD pipeline. The ORD pipeline has more organisations: its 2021 baseline had them and /sync, a delta, never lists a record that left the scope (a --full run would drop them)."
	echo "FHIR documents no succession resource, so a FHIR pipeline has no successors; the diff of a pipeline moved from ORD to FHIR says 'not compared' for them instead of reporting deletions."
	echo; echo "== 14. large scopes: baseline from a TRUD XML release, deltas from the API (a release written from state demo-2021, published 2025-07-10)"
	$(ODSYNC) serve --states $(DEMO_STATES) --state demo-2021 --write-trud "$$tmp/hscorgrefdataxml_data_demo.zip" --published 2025-07-10
	printf 'name = "demo_trud"\n[source]\ntype = "ord"\n[baseline]\ntype = "trud_xml"\nlocation = "%s"\n[scope]\nprimary_roles = ["RO197", "RO198"]\n[roles]\nmapping = "$(CURDIR)/pipelines/role_mapping.toml"\n[http]\nrequests_per_second = 200.0\n' "$$tmp/hscorgrefdataxml_data_demo.zip" > "$$tmp/demo_trud.toml"
	ODSYNC_NOW=2025-07-12T02:00:00Z $(ODSYNC) run "$$tmp/demo_trud.toml"
	echo "-- the deltas since the release's publication date, from the local ORD server (now serving demo-2025-07):"
	ODSYNC_NOW=2025-07-16T06:00:00Z $(ODSYNC) run "$$tmp/demo_trud.toml"
	$(ODSYNC) query "SELECT (SELECT count(*) FROM latest_organisations WHERE pipeline = 'demo_trud') AS trud_then_ord, (SELECT count(*) FROM latest_organisations WHERE pipeline = 'demo') AS ord_only, (SELECT count(*) FROM (SELECT * EXCLUDE (pipeline, version) FROM latest_organisations WHERE pipeline = 'demo_trud' EXCEPT ALL SELECT * EXCLUDE (pipeline, version) FROM latest_organisations WHERE pipeline = 'demo')) AS rows_that_differ"
	echo "The TRUD baseline plus two days of /sync gives the same organisations as the ORD pipeline's API baseline plus the same deltas."
	echo
	echo "Look at it yourself (DuckDB CLI or Python, no odsync needed):"
	echo "  duckdb $(DEMO_WAREHOUSE)/catalog.duckdb \"SELECT code, name, status FROM latest_organisations WHERE pipeline = 'demo' LIMIT 10\""
	echo "  duckdb -c \"SELECT version, count(*) FROM read_parquet('$(DEMO_WAREHOUSE)/demo/organisations/*/*.parquet', hive_partitioning = true) GROUP BY ALL\""
	echo "  duckdb $(DEMO_WAREHOUSE)/catalog.duckdb \"SELECT * FROM changes_latest WHERE pipeline = 'demo'\""
	echo "  duckdb $(DEMO_WAREHOUSE)/catalog.duckdb \"SELECT * FROM open_conflicts\""
	echo "  duckdb $(DEMO_WAREHOUSE)/catalog.duckdb \"SELECT * FROM provenance_latest WHERE code = 'RAX'\""
	echo "  duckdb $(DEMO_WAREHOUSE)/catalog.duckdb \"SELECT * FROM latest_trusts WHERE pipeline = 'demo'\""
	echo "  python3 -c \"import duckdb; print(duckdb.connect('$(DEMO_WAREHOUSE)/catalog.duckdb').sql('SELECT * FROM runs'))\""
	echo; echo "== 15. the run report: every run writes one; this is the demo pipeline's latest, written again"
	$(ODSYNC) report demo
	echo "   open it in a browser: file://$$(cd "$(DEMO_WAREHOUSE)" && pwd)/demo/_reports/latest.html"

REPORT_PNG ?= $(CARGO_TARGET_DIR)/report-check/demo-report.png
report-check: build ## Render the demo's run report in headless Chromium (Debian package) and save a screenshot
	command -v chromium >/dev/null || { echo "installing chromium (Debian package)"; $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null; }
	[ -f "$(DEMO_WAREHOUSE)/demo/_reports/latest.html" ] || $(MAKE) --no-print-directory demo
	mkdir -p "$(dir $(REPORT_PNG))"
	# The demo's latest run that changed something (the last demo run is an unchanged one).
	run=$$($(ODSYNC) --warehouse "$(DEMO_WAREHOUSE)" query "SELECT run_id FROM runs WHERE pipeline = 'demo' AND status = 'succeeded' ORDER BY run_number DESC LIMIT 1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['rows'][0][0])")
	page="$$(cd "$(dir $(REPORT_PNG))" && pwd)/demo-report.html"
	$(ODSYNC) --warehouse "$(DEMO_WAREHOUSE)" report demo --run "$$run" --out "$$page"
	# No network for the page: it must render from the file alone.
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 --window-size=1280,3200 --screenshot="$(REPORT_PNG)" "file://$$page" 2>/dev/null
	python3 -c "import sys; b=open(sys.argv[1],'rb').read(); assert b[:8]==b'\x89PNG\r\n\x1a\n' and len(b)>50000, 'the screenshot is empty'; print('screenshot:', sys.argv[1], len(b), 'bytes')" "$(REPORT_PNG)"
	echo "page: $$page"

bench: build ## Benchmark whole `odsync run`s (csv nightly, TRUD national, ORD deltas) beside a hand-written DuckDB job, then the diff and merge stages
	python3 bench/whole_runs.py "$(ODSYNC)" "$(CARGO_TARGET_DIR)/bench-runs"
	$(ODSYNC) bench --rows $${BENCH_ROWS:-250000,1000000} --work "$(CARGO_TARGET_DIR)/bench" $${BENCH_PAIR:+--write-pair "$$BENCH_PAIR"}

sync: build ## Run the nhs_trusts pipeline against the live public ORD API
	$(ODSYNC) run nhs_trusts

lint: $(LIBDUCKDB) ## rustfmt check and clippy (needs the rustfmt and clippy components)
	cargo fmt --check
	cargo clippy $(CARGO_FEATURES) --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt

clean: ## Remove build output (snapshots and the DuckDB cache are kept)
	cargo clean

airflow-check: build ## Install Airflow in a venv, import deploy/airflow/dags, run the DAG on the demo server (not part of `make test`)
	@tmp=$$(mktemp -d)
	if [ ! -x "$(AIRFLOW_VENV)/bin/airflow" ]; then
	  echo "installing apache-airflow $(AIRFLOW_VERSION) into $(AIRFLOW_VENV) (once; a few minutes)"
	  python3 -m venv "$(AIRFLOW_VENV).partial"
	  "$(AIRFLOW_VENV).partial/bin/pip" install -q $(AIRFLOW_PINS)
	  rm -rf "$(AIRFLOW_VENV)" && mv "$(AIRFLOW_VENV).partial" "$(AIRFLOW_VENV)"
	fi
	$(ODSYNC) serve --states $(DEMO_STATES) --state demo-2021 --port-file "$$tmp/port" 2>"$$tmp/serve.log" &
	server=$$!
	trap 'kill $$server 2>/dev/null || true; rm -rf "$$tmp"' EXIT
	for _ in $$(seq 100); do [ -s "$$tmp/port" ] && break; kill -0 $$server || { cat "$$tmp/serve.log"; exit 1; }; sleep 0.1; done
	export AIRFLOW_HOME="$$tmp/airflow" AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/deploy/airflow/dags" \
	  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__UNIT_TEST_MODE=False AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
	export ODSYNC_BIN="$(ODSYNC)" ODSYNC_PIPELINES=demo ODSYNC_PIPELINES_DIR="$(CURDIR)/pipelines" \
	  ODSYNC_WAREHOUSE="$$tmp/warehouse" ODSYNC_ORD_BASE_URL="http://127.0.0.1:$$(cat $$tmp/port)/ORD/2-0-0"
	"$(AIRFLOW_VENV)/bin/airflow" db migrate >"$$tmp/db.log" 2>&1 || { cat "$$tmp/db.log"; exit 1; }
	echo "== the DAG folder imports with no errors"
	errors=$$("$(AIRFLOW_VENV)/bin/airflow" dags list-import-errors -o json 2>/dev/null | tail -n 1)
	echo "$$errors"
	[ "$$errors" = "[]" ] || [ -z "$$errors" ] || { echo "import errors in deploy/airflow/dags"; exit 1; }
	"$(AIRFLOW_VENV)/bin/airflow" dags list -o plain 2>/dev/null | grep -q odsync_nightly
	echo "== odsync_nightly end to end on the demo pipeline (local ORD server)"
	AIRFLOW__LOGGING__LOGGING_LEVEL=INFO "$(AIRFLOW_VENV)/bin/airflow" dags test odsync_nightly >"$$tmp/dag.log" 2>&1 || { tail -n 40 "$$tmp/dag.log"; exit 1; }
	grep -E "Marking task as (SUCCESS|FAILED)|DagRun Finished" "$$tmp/dag.log" | sed 's/^\[[^]]*\] //'
	grep -q "DagRun Finished.*state=success" "$$tmp/dag.log" || { echo "the DAG run did not succeed"; tail -n 40 "$$tmp/dag.log"; exit 1; }
	grep -q "Done. Returned value was: {" "$$tmp/dag.log" || { echo "no run summary was pushed to XCom"; exit 1; }
	$(ODSYNC) status demo
	echo "airflow-check: the DAG imports, runs the demo pipeline and its health check passes"
