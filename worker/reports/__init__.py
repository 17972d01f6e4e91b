"""What people read: ``claimwire status`` (queues, states, feed health, recent errors)
and the exports of articles and claims."""
