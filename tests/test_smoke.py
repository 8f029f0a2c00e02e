async def test_add_and_stats(manager):
    q = manager.create_queue("smoke")
    job = await q.add({"a": 1})
    stats = await q.get_stats()
    assert job.id == "1"
    assert stats.waiting == 1 and stats.total == 1
