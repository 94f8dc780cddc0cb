"""Isolation of untrusted candidate code on the local runtime.

``bwrap`` builds the sandbox (mount, PID, network, IPC and UTS namespaces; an unprivileged user;
an allow-listed environment), ``cgroups`` puts aggregate memory and process limits on everything
inside it, ``relay`` carries the grader's few TCP ports across the sandbox's empty network
namespace, and ``records`` remembers what a grading started so ``takehome cleanup`` can end it
after the grader itself was killed.
"""
