"""Job submission against a head started with ``ember start --head``: the entrypoint runs
as a driver under a supervisor, its working_dir shipped and unpacked, its logs streamed;
it outlives the client that submitted it; stopping it leaves no process."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from typing import Iterator

import psutil
import pytest

from .conftest import Head, ember_cli, start_head
from conftest import build_wheel, process_gone, wait_for
from ember.exceptions import AuthenticationError, ClusterConnectionError, EmberError, RuntimeEnvSetupError
from ember.job_submission import JobStatus, JobSubmissionClient

pytestmark = pytest.mark.timeout(120)

DRIVER = textwrap.dedent("""
    import os, sys
    import ember
    import helper_in_working_dir

    ember.init()

    @ember.remote
    def square(x):
        return x * x

    print("job says", helper_in_working_dir.GREETING, sum(ember.get([square.remote(i) for i in range(4)])),
          os.environ.get("JOB_VAR"), flush=True)
""")


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    with start_head(num_cpus=2) as h:
        yield h


@pytest.fixture
def client(head: Head) -> Iterator[JobSubmissionClient]:
    with JobSubmissionClient(head.address, token_file=os.path.join(head.session_dir, "token")) as c:
        yield c


def _project(tmp_path, source: str = DRIVER) -> str:
    (tmp_path / "script.py").write_text(source)
    (tmp_path / "helper_in_working_dir.py").write_text("GREETING = 'hello from the working dir'\n")
    return str(tmp_path)


def test_job_runs_its_entrypoint_in_the_shipped_working_dir_and_its_logs_come_back(client, tmp_path):
    sid = client.submit_job(entrypoint="python script.py",
                            runtime_env={"working_dir": _project(tmp_path), "env_vars": {"JOB_VAR": "set"}},
                            metadata={"owner": "test"})
    assert client.wait_until_finished(sid, timeout_s=90) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
    assert "job says hello from the working dir 14 set" in client.get_job_logs(sid)
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 0 and info.metadata == {"owner": "test"} and info.end_time
    assert info.job_id and len(info.job_id) == 8  # the driver's ember job id, linked at its init()
    assert sid in [job.submission_id for job in client.list_jobs()]
    assert "".join(client.follow_logs(sid)) == client.get_job_logs(sid)


def test_failing_entrypoint_is_failed_with_its_exit_code_and_log_tail(client):
    sid = client.submit_job(entrypoint="python -c \"print('last words before failing'); raise SystemExit(3)\"")
    assert client.wait_until_finished(sid, timeout_s=60) == JobStatus.FAILED
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 3
    assert "exit code 3" in info.message and "last words before failing" in info.message
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"
    client.delete_job(sid)
    with pytest.raises(EmberError, match=sid):
        client.get_job_info(sid)


def test_stopped_job_leaves_no_process(client, tmp_path):
    source = textwrap.dedent("""
        import os, time
        import ember
        ember.init()

        @ember.remote
        def sleeper():
            return os.getpid()

        print("pids", os.getpid(), ember.get(sleeper.remote()), flush=True)
        time.sleep(600)
    """)
    sid = client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": _project(tmp_path, source)})
    line = wait_for(lambda: next((ln for ln in client.get_job_logs(sid).splitlines() if ln.startswith("pids")),
                                 None), timeout_s=60, what="the job's driver to start a task")
    pids = [int(x) for x in line.split()[1:]]
    assert client.get_job_status(sid) == JobStatus.RUNNING
    assert client.stop_job(sid)
    assert client.wait_until_finished(sid, timeout_s=30) == JobStatus.STOPPED
    wait_for(lambda: all(process_gone(pid) for pid in pids), timeout_s=20,
             what=f"the stopped job's driver and worker {pids} to exit")
    assert not client.stop_job(sid)  # already stopped: nothing to do


def test_job_survives_the_submitting_client_going_away(head, client, tmp_path):
    marker = tmp_path / "go"
    source = textwrap.dedent(f"""
        import os, time
        print("waiting", flush=True)
        while not os.path.exists({str(marker)!r}):
            time.sleep(0.05)
        print("done waiting", flush=True)
    """)
    project = tmp_path / "proj"
    project.mkdir()
    submit = subprocess.Popen(ember_cli() + ["job", "submit", "--address", head.address, "--working-dir",
                                             _project(project, source), "--", "python", "script.py"],
                              env=head.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: [j for j in client.list_jobs() if j.status == JobStatus.RUNNING
                          and "waiting" in client.get_job_logs(j.submission_id)],
                 timeout_s=60, what="the submitted job to run")
    finally:
        submit.send_signal(signal.SIGKILL)
        submit.wait()
    (job,) = [j for j in client.list_jobs() if j.status == JobStatus.RUNNING]
    marker.write_text("")
    assert client.wait_until_finished(job.submission_id, timeout_s=30) == JobStatus.SUCCEEDED
    assert "done waiting" in client.get_job_logs(job.submission_id)


def test_cli_submit_follows_logs_and_exits_with_the_jobs_status(head, tmp_path):
    done = subprocess.run(ember_cli() + ["job", "submit", "--address", head.address, "--submission-id",
                                         "cli-job", "--", "python", "-c", "print('from the cli job')"],
                          env=head.env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the cli job" in done.stdout and "SUCCEEDED" in done.stdout
    for args, expected in ((["status", "cli-job"], "SUCCEEDED"), (["logs", "cli-job"], "from the cli job"),
                           (["list"], "cli-job")):
        out = subprocess.run(ember_cli() + ["job", *args, "--address", head.address], env=head.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and expected in out.stdout, out.stdout + out.stderr
    failed = subprocess.run(ember_cli() + ["job", "submit", "--address", head.address, "--", "false"],
                            env=head.env, capture_output=True, text=True, timeout=90)
    assert failed.returncode == 1 and "FAILED" in failed.stdout


@pytest.mark.parametrize("working_dir", ["/nonexistent/ember-wd", "s3://bucket/project.zip"])
def test_unreachable_working_dir_is_a_typed_error_and_the_head_keeps_working(client, working_dir):
    with pytest.raises(RuntimeEnvSetupError, match="working_dir"):
        client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": working_dir})
    sid = client.submit_job(entrypoint="true")
    assert client.wait_until_finished(sid, timeout_s=60) == JobStatus.SUCCEEDED


def test_bad_requests_name_the_thing_and_the_fix(head, client, tmp_path):
    with pytest.raises(EmberError, match="no job with submission_id 'nope'"):
        client.get_job_status("nope")
    sid = client.submit_job(entrypoint="true", submission_id="taken-id")
    with pytest.raises(EmberError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id="taken-id")
    client.wait_until_finished(sid, timeout_s=60)
    bad_token = tmp_path / "token"
    bad_token.write_text(os.urandom(32).hex())
    with pytest.raises(AuthenticationError, match=f"from token_file={bad_token}"):
        JobSubmissionClient(head.address, token_file=str(bad_token))
    with pytest.raises(ClusterConnectionError, match="127.0.0.1:1"):
        JobSubmissionClient("127.0.0.1:1", token_file=str(bad_token))
    with pytest.raises(EmberError, match="not to the dashboard's HTTP port"):
        JobSubmissionClient("http://127.0.0.1:1")
    assert psutil.pid_exists(head.pid)


def test_a_jobs_pip_env_reaches_its_tasks(client, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(str(wheels), "ember_job_pip_probe", "1.0", "VALUE = 'installed for the job'\n")
    source = textwrap.dedent("""
        import ember
        ember.init()

        @ember.remote
        def probe():
            import ember_job_pip_probe
            return ember_job_pip_probe.VALUE

        print("probe:", ember.get(probe.remote()), flush=True)
    """)
    project = tmp_path / "proj"
    project.mkdir()
    sid = client.submit_job(entrypoint="python script.py", runtime_env={
        "working_dir": _project(project, source),
        "pip": {"packages": ["ember_job_pip_probe"], "pip_install_options": ["--no-index", "--find-links",
                                                                             str(wheels)]}})
    assert client.wait_until_finished(sid, timeout_s=90) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
    assert "probe: installed for the job" in client.get_job_logs(sid)


def test_a_killed_head_takes_its_jobs_with_it(tmp_path):
    """The supervisor watches its pipe from the node manager: a head killed with SIGKILL
    leaves no job driver behind."""
    with start_head(num_cpus=1) as own_head:
        with JobSubmissionClient(own_head.address, token_file=os.path.join(own_head.session_dir, "token")) as c:
            sid = c.submit_job(entrypoint="python -c \"import os, time; print('pid', os.getpid(), flush=True); "
                                          "time.sleep(600)\"")
            line = wait_for(lambda: next((ln for ln in c.get_job_logs(sid).splitlines() if ln.startswith("pid")),
                                         None), timeout_s=60, what="the job's entrypoint to start")
        os.kill(own_head.pid, signal.SIGKILL)
        pid = int(line.split()[1])
        wait_for(lambda: process_gone(pid), timeout_s=20, what="the job's entrypoint to exit with its head")
