"""The Dockerfile stays in step with the build.

No Docker engine runs here, so the image is not built; these tests check,
against this checkout and the binaries under test, what `docker build` would
trip on: a build package the Dockerfile does not install, a source directory
CMake reads that it does not copy, a shared library the runtime stage lacks,
and a baked-in config that does not pass `ward check` on its own.
"""

import os
import re
import shutil
import subprocess

import pytest

from harness import SOURCE_DIR, WARD_BIN, WHOAMI_BIN, require_binary, run_ward

DOCKERFILE = SOURCE_DIR / "Dockerfile"
# In debian:12-slim already: apt and dpkg depend on them.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
# A sanitizer build links its runtime, which no image carries.
SANITIZER_RUNTIME = re.compile(r"^lib(a|ub|t|l|hwa)san\d*$")


def stages():
    """The Dockerfile's stages: a list of (FROM line, its lines joined across `\\`)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    assert len(out) == 2, "expected a build stage and a runtime stage"
    return out


def apt_packages(lines):
    pkgs = set()
    for line in lines:
        for m in re.finditer(r"apt-get install ((?:-\S+\s+)*)([^&]+)", line):
            pkgs.update(m.group(2).split())
    return pkgs


def copies(lines):
    """(sources, destination) of each COPY from the build context."""
    out = []
    for line in lines:
        words = line.split()
        if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        out.append((words[1:-1], words[-1]))
    return out


def deps_sh_array(name):
    script = (f'source <(sed -n "/^{name}=(/,/^)/p" scripts/deps.sh); '
              f'printf "%s\\n" "${{{name}[@]}}"')
    out = subprocess.run(["bash", "-c", script], cwd=SOURCE_DIR, capture_output=True, text=True,
                         timeout=10, check=True).stdout.split()
    assert out, f"no {name} in scripts/deps.sh"
    return set(out)


def owning_package(path):
    """The Debian package that installed a file (merged /usr: try both spellings)."""
    for p in (path, os.path.realpath(path), re.sub(r"^/lib", "/usr/lib", path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    pytest.fail(f"no Debian package owns {path}")


def depends(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", pkg], capture_output=True, text=True,
                       timeout=10)
    if r.returncode != 0:
        return set()
    return {re.split(r"[\s(:]", alt.strip())[0] for dep in r.stdout.split(",")
            for alt in dep.split("|") if alt.strip()}


def shared_libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [m.group(1) for m in re.finditer(r"=> (/\S+)", out)]


def test_the_build_stage_installs_every_build_package():
    (_, build), _ = stages()
    missing = deps_sh_array("build_pkgs") - apt_packages(build)
    assert not missing, f"Dockerfile's build stage does not install {sorted(missing)}"


def test_the_build_stage_copies_every_source_cmake_reads(tmp_path):
    (_, build), _ = stages()
    src = tmp_path / "src"
    src.mkdir()
    for sources, dest in copies(build):
        for s in sources:
            target = src / dest / s if dest.endswith("/") else src / dest
            if (SOURCE_DIR / s).is_dir():
                shutil.copytree(SOURCE_DIR / s, target, ignore=shutil.ignore_patterns("out"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(SOURCE_DIR / s, target)
    # Configure only, as the Dockerfile does before it builds.
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "build"), "-G", "Ninja",
                        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                        "-DPython3_EXECUTABLE=/usr/bin/python3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"cmake on the Dockerfile's COPY set failed:\n{r.stderr[-2000:]}"


@pytest.mark.parametrize("binary", ["ward", "ward-whoami"])
def test_the_runtime_stage_has_every_shared_library(binary):
    path = WARD_BIN if binary == "ward" else WHOAMI_BIN
    require_binary(path, "WARD_BIN" if binary == "ward" else "WHOAMI_BIN")
    _, (_, runtime) = stages()
    listed = apt_packages(runtime)
    available = listed | BASE_IMAGE_PACKAGES
    for pkg in listed:
        available |= depends(pkg)
    needed = {owning_package(lib) for lib in shared_libraries(path)}
    missing = {p for p in needed - available if not SANITIZER_RUNTIME.match(p)}
    assert not missing, f"{binary} needs {sorted(missing)}, which the runtime stage lacks"


def test_the_baked_in_config_passes_check_alone(tmp_path):
    """The image has no certs/ and no checkout: the config must stand alone."""
    _, (_, runtime) = stages()
    baked = [s[0] for s, dest in copies(runtime) if dest == "/etc/ward/ward.yaml"]
    assert len(baked) == 1, "expected one COPY to /etc/ward/ward.yaml"
    shutil.copy(SOURCE_DIR / baked[0], tmp_path / "ward.yaml")
    r = run_ward("check", "-c", "ward.yaml", cwd=tmp_path)
    assert r.returncode == 0, f"{baked[0]} fails `ward check` in an empty directory:\n{r.stderr}"
