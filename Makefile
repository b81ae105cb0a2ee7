# FpgaAccel: build, test, run and measure the FA-1 driver stack.
# On a fresh machine: `make run` (the main job, on the model) and `make test`.

DOTNET        ?= dotnet
CONFIG        ?= Release
SLN           := FpgaAccel.sln
CLI           := driver/FpgaAccel.Cli/FpgaAccel.Cli.csproj
TESTS         := tests/FpgaAccel.Tests.csproj
PERF          := perf/FpgaAccel.Perf.csproj
RESULTS       := artifacts/test-results
# Tests that need a board carry [Category("Hardware")]; they run only with FPGAACCEL_DEVICE set.
TEST_FILTER   ?= $(if $(FPGAACCEL_DEVICE),,Category!=Hardware)
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: all deps restore build test test-vlab test-vboard run bench format format-fix clean

all: build

# What a fresh machine may lack. The .NET SDK is the machine's own; gcc, the kernel's uapi headers (linux/vfio.h)
# and libusb's header (libusb-1.0/libusb.h) are needed by the header-checked layout tests and come from Debian, as
# does libusb-1.0 itself (the management port's transport loads it at run time).
DEB_HEADERS   := gcc libc6-dev linux-libc-dev libusb-1.0-0-dev libusb-1.0-0
deps:
	@command -v $(DOTNET) >/dev/null || { echo "make: the .NET 10 SDK ('$(DOTNET)') is not on PATH; install it first." >&2; exit 1; }
	@if ! command -v gcc >/dev/null || [ ! -f /usr/include/linux/vfio.h ] || [ ! -f /usr/include/libusb-1.0/libusb.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make: installing $(DEB_HEADERS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_HEADERS) >/dev/null; \
	  else \
	    echo "make: gcc, /usr/include/linux/vfio.h or /usr/include/libusb-1.0/libusb.h is missing; install $(DEB_HEADERS) (header tests will be skipped)" >&2; \
	  fi; \
	fi

restore: deps
	$(DOTNET) restore $(SLN)

build: restore
	$(DOTNET) build $(SLN) -c $(CONFIG) --no-restore

test: build
	@rm -rf $(RESULTS)
	$(DOTNET) test $(TESTS) -c $(CONFIG) --no-build --filter "$(TEST_FILTER)" \
	  --logger "trx;LogFileName=tests.trx" --results-directory $(RESULTS)
	@trx=$$(ls $(RESULTS)/*.trx 2>/dev/null | head -1); \
	if [ -n "$$trx" ]; then \
	  counters=$$(grep -o '<Counters [^>]*>' "$$trx"); \
	  passed=$$(echo "$$counters" | sed -n 's/.* passed="\([0-9]*\)".*/\1/p'); \
	  failed=$$(echo "$$counters" | sed -n 's/.* failed="\([0-9]*\)".*/\1/p'); \
	  notrun=$$(echo "$$counters" | sed -n 's/.* notExecuted="\([0-9]*\)".*/\1/p'); \
	  echo "$$passed passed, $$failed failed, $${notrun:-0} skipped"; \
	fi

# The virtual lab: the VFIO layer against a real kernel, IOMMU and PCI device, in a QEMU guest
# (tests/vlab/vlab.sh). Installs its Debian packages when missing (as root), caches the guest
# kernel and program in .vlab-cache/, and ends with the guest's 'N passed, N failed' line.
test-vlab:
	@DOTNET=$(DOTNET) tests/vlab/vlab.sh

# The virtual board: the FA-1 model served over vfio-user ('fpgaaccel model serve') to QEMU 11's
# vfio-user-pci, and the real fpgaaccel in the guest driving it with the board backend through the
# guest kernel's VFIO and IOMMU (tests/vboard/vboard.sh). Uses the system QEMU when it is 10.1 or later,
# else a Debian trixie root with trixie-backports' QEMU, made once into .vlab-cache/ (as root). Ends
# with the plain 'N passed, N failed' line, the guest's checks and the host's.
test-vboard:
	@DOTNET=$(DOTNET) tests/vboard/vboard.sh

# The main job: DMA latency with pinned buffers against on-demand (faulting) buffers, on the model,
# side by side; tables and histograms on the terminal, JSON, CSV and an SVG plot in artifacts/.
RUN_ARGS      ?= --mode both
run: build
	@mkdir -p artifacts
	$(DOTNET) run --project $(CLI) -c $(CONFIG) --no-build -- jitter --backend model $(RUN_ARGS) \
	  --json artifacts/jitter.json --csv artifacts/jitter.csv --svg artifacts/jitter.svg

bench: build
	$(DOTNET) run --project $(PERF) -c $(CONFIG) --no-build -- --short --filter '*'

format: restore
	$(DOTNET) format $(SLN) --verify-no-changes --no-restore

format-fix: restore
	$(DOTNET) format $(SLN) --no-restore

clean:
	$(DOTNET) clean $(SLN) -c $(CONFIG)
	rm -rf artifacts BenchmarkDotNet.Artifacts
