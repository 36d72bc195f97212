"""Test support shared by the suite: servers, a fault proxy, loop runners, a lag ticker."""
