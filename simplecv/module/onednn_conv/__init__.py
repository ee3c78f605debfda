"""A dygraph conv2d whose forward, backward-data and backward-weights run oneDNN on the CPU.

Paddle's dygraph CPU convolution is im2col + MKL GEMM; on the 3x3 convolutions over large maps it
is 1.3-2x slower than oneDNN's direct kernels (``jit:avx2``), which are the ones PyTorch runs.
Paddle's wheel ships oneDNN (``paddle/libs/libdnnl.so.3``) but its dygraph never calls it, so
``conv.cc`` is a Paddle custom C++ operator calling that library, built once with
``paddle.utils.cpp_extension``; its grad op (``PD_BUILD_GRAD_OP``) runs backward-data and
backward-weights (and the bias gradient in the same pass), skipping backward-data when the input
has ``stop_gradient`` (the image into the stem).

Building needs a C++ compiler and oneDNN's C++ headers of the same major.minor version as the
bundled library: Paddle's wheel does not ship them (only thin ``dnnl.hpp`` wrappers), PyPI's
``onednn-devel`` does (``pip install --no-deps onednn-devel==2025.0.1`` gives oneDNN 3.6 headers
for Paddle 3.3's oneDNN 3.6.2; without ``--no-deps`` pip also pulls the unrelated ``onednn``
runtime). ``include/oneapi/dnnl/dnnl_config.h`` here takes precedence over the package's own
(which describes a SYCL/TBB build) and states the bundled library's configuration: OpenMP, no GPU.

The build goes to ``$FACTSEG_ONEDNN_BUILD_DIR``, else ``$XDG_CACHE_HOME/factseg-paddle/onednn_conv/<key>``
(``~/.cache/...``), ``<key>`` a digest of the sources, the headers' version and Paddle's version;
later processes only load it. When anything is missing or the build fails, :func:`load_extension`
warns once and returns None, and callers use Paddle's own convolution.
"""

import ctypes
import fcntl
import glob
import hashlib
import logging
import os
import re
import shutil
import sys
import sysconfig
import warnings

import paddle

BUILD_DIR_ENV = 'FACTSEG_ONEDNN_BUILD_DIR'
INCLUDE_ENV = 'FACTSEG_ONEDNN_INCLUDE'
EXTENSION_NAME = 'factseg_onednn_conv'
_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.join(_HERE, 'conv.cc')
_SHIM_INCLUDE = os.path.join(_HERE, 'include')

_state = {'tried': False, 'module': None, 'reason': None, 'quiet': False}


def paddle_libs_dir():
    """Paddle's ``libs`` folder, which holds ``libdnnl.so.3``."""
    return os.path.join(os.path.dirname(paddle.__file__), 'libs')


def runtime_version():
    """``(major, minor, patch)`` of the oneDNN library bundled with Paddle, or None if it is absent."""
    path = os.path.join(paddle_libs_dir(), 'libdnnl.so.3')
    if not os.path.exists(path):
        return None

    class _Version(ctypes.Structure):
        _fields_ = [
            ('major', ctypes.c_int),
            ('minor', ctypes.c_int),
            ('patch', ctypes.c_int),
            ('hash', ctypes.c_char_p),
            ('cpu_runtime', ctypes.c_uint),
            ('gpu_runtime', ctypes.c_uint),
        ]

    library = ctypes.CDLL(path)
    library.dnnl_version.restype = ctypes.POINTER(_Version)
    version = library.dnnl_version().contents
    return version.major, version.minor, version.patch


def header_version(include_dir):
    """``(major, minor, patch)`` from ``include_dir/oneapi/dnnl/dnnl_version.h``, or None."""
    path = os.path.join(include_dir, 'oneapi', 'dnnl', 'dnnl_version.h')
    if not os.path.exists(os.path.join(include_dir, 'oneapi', 'dnnl', 'dnnl.hpp')) or not os.path.exists(path):
        return None
    with open(path) as stream:
        text = stream.read()
    found = [re.search(r'#define\s+DNNL_VERSION_%s\s+(\d+)' % part, text) for part in ('MAJOR', 'MINOR', 'PATCH')]
    return tuple(int(match.group(1)) for match in found) if all(found) else None


def candidate_include_dirs():
    """Folders that may hold ``oneapi/dnnl/dnnl.hpp``, most specific first."""
    dirs = []
    if os.environ.get(INCLUDE_ENV):
        dirs.append(os.environ[INCLUDE_ENV])
    paddle_include = os.path.join(os.path.dirname(paddle.__file__), 'include')
    dirs.append(os.path.join(paddle_include, 'third_party', 'install', 'onednn', 'include'))
    dirs.append(os.path.join(sys.prefix, 'include'))  # where the onednn-devel wheel puts them
    dirs.append(sysconfig.get_paths()['data'] + '/include')
    dirs.extend(['/usr/local/include', '/usr/include'])
    return list(dict.fromkeys(dirs))


def find_headers(version):
    """The first candidate folder whose oneDNN headers have ``version``'s major.minor, or None."""
    for include_dir in candidate_include_dirs():
        found = header_version(include_dir)
        if found is not None and found[:2] == tuple(version[:2]):
            return include_dir
    return None


def default_build_dir(key):
    """``$FACTSEG_ONEDNN_BUILD_DIR``, else ``<XDG cache or ~/.cache>/factseg-paddle/onednn_conv/<key>``."""
    if os.environ.get(BUILD_DIR_ENV):
        return os.environ[BUILD_DIR_ENV]
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'factseg-paddle', 'onednn_conv', key)


def _build_key(include_dir, version):
    digest = hashlib.sha256()
    for path in [_SOURCE] + sorted(glob.glob(os.path.join(_SHIM_INCLUDE, '**', '*.h'), recursive=True)):
        with open(path, 'rb') as stream:
            digest.update(stream.read())
    # The source's path too: cpp_extension rebuilds when the same build folder sees another path.
    digest.update(
        repr(
            (
                paddle.__version__,
                version,
                header_version(include_dir),
                os.path.abspath(include_dir),
                _SOURCE,
                sys.version_info[:2],
            )
        ).encode()
    )
    return digest.hexdigest()[:16]


def _unavailable(reason):
    _state['reason'] = reason
    message = "oneDNN convolution unavailable, using Paddle's convolution: %s" % reason
    if _state['quiet']:
        logging.getLogger('factseg.model').info(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return None


def load_extension(quiet=False):
    """The compiled custom-operator module (built on first use), or None saying once why.

    Args:
        quiet: say why in an INFO log line instead of a ``RuntimeWarning`` (when oneDNN was not
            asked for explicitly).
    """
    if _state['tried']:
        return _state['module']
    _state['tried'] = True
    _state['quiet'] = quiet
    version = runtime_version()
    if version is None:
        return _unavailable('Paddle ships no libdnnl.so.3 in %s' % paddle_libs_dir())
    compiler = os.environ.get('CXX', 'c++')
    if shutil.which(compiler) is None:
        return _unavailable('no C++ compiler (%s) on PATH' % compiler)
    include_dir = find_headers(version)
    if include_dir is None:
        return _unavailable(
            'no oneDNN %d.%d C++ headers (oneapi/dnnl/dnnl.hpp) in %s; '
            '`pip install --no-deps onednn-devel==2025.0.1` provides 3.6 headers, or set $%s'
            % (version[0], version[1], ', '.join(candidate_include_dirs()), INCLUDE_ENV)
        )
    build_dir = default_build_dir(_build_key(include_dir, version))
    try:
        os.makedirs(build_dir, exist_ok=True)
        previous_disable = logging.root.manager.disable
        with open(os.path.join(build_dir, '.lock'), 'w') as lock, warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='No ccache found')
            from paddle.utils.cpp_extension import load

            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time for concurrent processes
            libs = paddle_libs_dir()
            logging.disable(logging.INFO)  # cpp_extension logs "running build_ext" etc. at every load
            try:
                module = load(
                    name=EXTENSION_NAME,
                    sources=[_SOURCE],
                    extra_cxx_cflags=['-O2', '-std=c++17', '-I' + _SHIM_INCLUDE, '-I' + include_dir],
                    extra_ldflags=['-L' + libs, '-l:libdnnl.so.3', '-Wl,-rpath,' + libs],
                    build_directory=build_dir,
                    verbose=False,
                )
            finally:
                logging.disable(previous_disable)
    except Exception as exc:  # noqa: BLE001  (any build or load failure means: fall back)
        return _unavailable('building %s in %s failed: %s: %s' % (_SOURCE, build_dir, type(exc).__name__, exc))
    _state['module'] = module
    return module


def unavailable_reason():
    """Why :func:`load_extension` returned None (None if it was not tried or succeeded)."""
    return _state['reason']


def _pair(value):
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """``F.conv2d`` (NCHW, float32, CPU, groups=1, zero ``padding`` as an int or ``[h, w]``) run by oneDNN.

    Raises RuntimeError when the extension is unavailable (see :func:`load_extension`).
    """
    if load_extension() is None:
        raise RuntimeError('oneDNN convolution unavailable: %s' % _state['reason'])
    ext = _state['module']
    x = x if x.is_contiguous() else x.contiguous()
    geometry = (_pair(stride), _pair(padding), _pair(dilation), not x.stop_gradient)
    if bias is None:
        return ext.onednn_conv2d(x, weight, *geometry)
    return ext.onednn_conv2d_bias(x, weight, bias, *geometry)


def implementations(x, weight, stride=1, padding=0, dilation=1):
    """oneDNN's kernels for this geometry: ``'forward|backward_data|backward_weights'`` (e.g. ``jit:avx2|...``)."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError('oneDNN convolution unavailable: %s' % _state['reason'])
    info = ext.onednn_conv2d_impl_info(x, weight, _pair(stride), _pair(padding), _pair(dilation))
    return bytes(info.numpy()).decode()
