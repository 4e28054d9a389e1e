# timq — see README.md. Every target works on a fresh clone with Go 1.26;
# tests use the Redis at REDIS_ADDR (default 127.0.0.1:6379) when it answers
# and an embedded one when it does not.

GO        ?= go
BIN       ?= bin/timq
PKGS      := ./...
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: run test test-embedded build lint bench soak fuzz fuzz-short clean

## run: everything in one process on embedded defaults (Redis, emulator, worker, dashboard, sample work).
## It builds bin/timq and runs it rather than "go run", which exits 1 on Ctrl-C
## whatever the program does, so make reported an error for a clean stop.
run: build
	$(BIN) dev

## test: lint, then every test with the race detector. Installs Debian's
## chromium and nodejs, for the browser test and the Node client example,
## when it can (those tests fail without them under CI=true and are skipped
## otherwise).
test: lint
	@./.ci/install-test-tools.sh || [ "$$CI" != "true" ]
	$(GO) test $(TEST_FLAGS) $(PKGS)

## test-embedded: the tests again, forcing the embedded Redis (what a machine without Redis runs)
test-embedded:
	TIMQ_TEST_REDIS=mini $(GO) test $(TEST_FLAGS) $(PKGS)

## build: the timq binary in bin/
build:
	$(GO) build -o $(BIN) ./cmd/timq

## bench: the benchmark program (internal/bench): 1, 2 and 4 worker processes against the emulator, then the recall scenarios and the jobs phase; table on stdout, results.md, calls.csv, calls.png in bench-out/
bench: build
	$(BIN) bench

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz-short: every fuzz target for 50,000 inputs (FUZZTIME=50000x, a few seconds;
## a count, not a duration: see .ci/fuzz.sh); fuzz: a minute each
## (targets: tasks FuzzParse = payload parsing and validation, bulk FuzzParseLine =
## bulk-file lines, chatapi FuzzDecodeResponse = API answers, and the emulator's,
## msgbody's and usersig's own; crashers land in the package's testdata/fuzz)
fuzz-short:
	FUZZTIME=$${FUZZTIME:-50000x} ./.ci/fuzz.sh
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} ./.ci/fuzz.sh

clean:
	rm -rf bin bench-out

## soak: the crash, restart, fault-storm and end-to-end tests at 5-10x their
## make-test sizes (TIMQ_SOAK=1); with the race detector, about 5 minutes here
soak:
	TIMQ_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v -run . ./internal/chaos/ ./e2e/
