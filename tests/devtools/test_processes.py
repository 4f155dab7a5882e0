"""The helpers tests and the soak start their processes with."""

from devtools.processes import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # The kernel hands a closed port out again: the soak once gave Redis the port it had picked
    # for a node, and the node could not bind. 3,000 draws from ~28,000 ephemeral ports collide
    # almost surely unless the helper remembers what it gave.
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
